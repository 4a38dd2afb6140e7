"""The run's log file and saved config: kept in memory until the run holds its folder, so a refused run writes nothing there."""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys

from omegaconf import DictConfig, OmegaConf

from prep.core import storage
from prep.core.errors import PrepError
from prep.run import outputs
from prep.runfiles.names import HYDRA, LOCK, LOG

FILE_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] %(message)s"
_BUFFERED = 10_000  # records kept before the log file opens (planning logs little; a flood of skips is capped)


class RunLog(logging.Handler):
    """A log handler that buffers records until `open(path)`, then writes them and every later one to the file."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._buffer: list[logging.LogRecord] = []
        self._file: logging.FileHandler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._file is not None:
            self._file.emit(record)
        elif len(self._buffer) < _BUFFERED:
            self._buffer.append(record)

    def open(self, path: str) -> None:
        if self._file is not None:
            return
        try:
            stream = _open_append(path)
        except OSError as err:
            logging.getLogger(__name__).warning("%s: the run's log is not written there: %s", path, err.strerror or err)
            self._buffer.clear()
            return
        handler = _LogFile(stream)
        handler.setFormatter(logging.Formatter(FILE_FORMAT))
        for record in self._buffer:
            handler.emit(record)
        self._buffer.clear()
        self._file = handler

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # a full disk while closing the log: the terminal already has every line
        super().close()


class _LogFile(logging.StreamHandler):
    """The log file: the first write that fails (disk full) turns it off with one line on the terminal,
    instead of logging's own traceback for every later record."""

    def handleError(self, record: logging.LogRecord) -> None:
        err = sys.exc_info()[1]
        stream, self.stream = self.stream, None
        try:
            stream.close()
        except OSError:
            pass
        print(f"[prep] the run's log file stopped: {getattr(err, 'strerror', None) or err}", file=sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is not None:
            super().emit(record)


def _open_append(path: str):
    """prep.log for appending: a regular file or a new one, never through a symlink or into a FIFO."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:  # a hard link would make prep append to another file
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file of its own (a FIFO, device or hard link)", path)
    os.set_blocking(fd, True)
    # backslashreplace: a file name that is not UTF-8 (a Linux folder can hold one) is logged, not an error.
    return open(fd, "a", encoding="utf-8", errors="backslashreplace")


def save_config(run_dir: str, cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """.hydra/config.yaml, hydra.yaml and overrides.yaml, as Hydra writes them: the exact rerun reads these. The
    folder is marked as prep's first (a run that stopped early leaves its config and log in a fresh folder)."""
    try:
        outputs.mark(run_dir)
    except (PrepError, OSError) as err:
        logging.getLogger(__name__).warning("%s: the run's config is not saved there: %s", run_dir, getattr(err, "strerror", None) or err)
        return
    folder = os.path.join(run_dir, HYDRA)
    if os.path.islink(folder) or (os.path.exists(folder) and not os.path.isdir(folder)):
        logging.getLogger(__name__).warning("%s is not a plain folder: the run's config is not saved there", folder)
        return
    storage.makedirs(folder, root=run_dir)
    files = {
        "config.yaml": cfg,
        "hydra.yaml": OmegaConf.create({"hydra": hydra_cfg}),
        "overrides.yaml": hydra_cfg.overrides.task,
    }
    for name, node in files.items():
        storage.write_bytes(os.path.join(folder, name), OmegaConf.to_yaml(node).encode("utf-8", "backslashreplace"), root=run_dir)


def is_fresh(run_dir: str) -> bool:
    """A run folder nobody has used (Hydra creates it before prep runs): empty, or holding only prep's lock, or
    only prep's lock and log. A prep.log in a folder prep did not mark is another program's, never appended to."""
    try:
        entries = list(os.scandir(run_dir))
    except OSError:
        return False
    if not all(e.name in (LOCK, LOG) and e.is_file(follow_symlinks=False) for e in entries):
        return False
    if any(e.name == LOCK for e in entries) and not outputs.is_prep_lock(run_dir):
        return False  # another program's lock file (or a hard link there): not a folder prep may write its log in
    return not any(e.name == LOG for e in entries) or outputs.is_marked(run_dir)
