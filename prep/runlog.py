"""The run's log file and saved config: kept in memory until the run holds its folder, so a refused run writes nothing there."""

from __future__ import annotations

import logging
import os

from omegaconf import DictConfig, OmegaConf

from prep import outputs

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
        handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        handler.setFormatter(logging.Formatter(FILE_FORMAT))
        for record in self._buffer:
            handler.emit(record)
        self._buffer.clear()
        self._file = handler

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        super().close()


def save_config(run_dir: str, cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """.hydra/config.yaml, hydra.yaml and overrides.yaml, as Hydra writes them: the exact rerun reads these."""
    folder = os.path.join(run_dir, outputs.HYDRA)
    os.makedirs(folder, exist_ok=True)
    files = {
        "config.yaml": cfg,
        "hydra.yaml": OmegaConf.create({"hydra": hydra_cfg}),
        "overrides.yaml": hydra_cfg.overrides.task,
    }
    for name, node in files.items():
        path = os.path.join(folder, name)
        with open(path + ".partial", "w", encoding="utf-8") as f:
            f.write(OmegaConf.to_yaml(node))
        os.replace(path + ".partial", path)


def is_fresh(run_dir: str) -> bool:
    """A run folder nobody has used: empty, or holding only the lock or a log (Hydra creates it before prep runs)."""
    try:
        return set(os.listdir(run_dir)) <= {outputs.LOCK, outputs.LOG}
    except OSError:
        return False
