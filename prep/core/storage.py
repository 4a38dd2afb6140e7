"""Where bytes live: local paths through os (fast, as before), fsspec URLs (s3://, gs://, memory://, ...) otherwise.

Every read and write of inputs and outputs goes through here, so object storage works wherever a path does.
On object stores an object appears only when it is complete (one upload), the counterpart of a local rename.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import tempfile
from contextlib import contextmanager

from prep.core import nofollow
from prep.core.errors import ConfigError, InputError


def is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def _fs(path: str):
    try:
        import fsspec
    except ImportError:
        raise ConfigError(f"{path}: object storage needs fsspec and the filesystem's package (pip install 'prep-records[cloud]')") from None
    try:
        fs, inner = fsspec.core.url_to_fs(path)
    except (ImportError, ValueError) as err:
        raise ConfigError(f"{path}: {err}") from None
    return fs, inner


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if is_url(base) else os.path.join(local(base), *parts)


def exists(path: str) -> bool:
    if is_url(path):
        fs, inner = _fs(path)
        return fs.exists(inner)
    return os.path.exists(local(path))


def info(path: str) -> dict:
    """A remote object's metadata (size, and an ETag or modification time where the store gives one)."""
    fs, inner = _fs(path)
    return fs.info(inner)


def isdir(path: str) -> bool:
    if is_url(path):
        fs, inner = _fs(path)
        return fs.isdir(inner)
    return os.path.isdir(local(path))


def isfile(path: str) -> bool:
    if is_url(path):
        fs, inner = _fs(path)
        return fs.isfile(inner)
    return os.path.isfile(local(path))


MAX_READ_BYTES = 1 << 30  # prep's own records (summary, manifest, index files) are far smaller


@contextmanager
def local_copy(path: str, suffix: str = ""):
    """A local path for `path`: itself on this machine, else a temporary copy of the object (removed after);
    for libraries that open files by name (array_record)."""
    if not is_url(path):
        yield local(path)
        return
    handle, copy = tempfile.mkstemp(prefix="prep-", suffix=suffix)
    try:
        try:
            with os.fdopen(handle, "wb") as out, open_read(path) as f:
                shutil.copyfileobj(f, out, 1 << 20)
        except FileNotFoundError:
            raise InputError(f"{path}: cannot read: No such file or directory") from None
        yield copy
    finally:
        os.remove(copy)


def open_read(path: str):
    """A binary file object (seekable; remote ones read by ranges).

    Locally only a regular file is opened, without blocking: a FIFO or device put where prep expects a file
    (summary.json, a shard, a label file) is an error, never a hang or an endless read of /dev/zero.
    """
    if is_url(path):
        fs, inner = _fs(path)
        return fs.open(inner, "rb")
    return os.fdopen(nofollow.regular(os.open(local(path), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), path), "rb")


def read_bytes(path: str, limit: int = MAX_READ_BYTES) -> bytes:
    """A whole file, refused (OSError EFBIG) when it is larger than `limit`."""
    if is_url(path):
        fs, inner = _fs(path)
        size = fs.size(inner)
        if size is not None and size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit:,} bytes", path)
        return fs.cat_file(inner)
    with open_read(path) as f:
        if os.fstat(f.fileno()).st_size > limit:  # a regular file: its size is known before reading
            raise OSError(errno.EFBIG, f"larger than {limit:,} bytes", path)
        return f.read()


def listdir(path: str) -> list[str]:
    """Names directly inside a folder (or under a prefix); [] when there is none."""
    if is_url(path):
        fs, inner = _fs(path)
        if not fs.exists(inner):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(inner, detail=False))
    return sorted(os.listdir(local(path))) if os.path.isdir(local(path)) else []


def find(path: str) -> list[str]:
    """Every file below a remote folder, as paths relative to it."""
    fs, inner = _fs(path)
    root = inner.rstrip("/") + "/"
    return sorted(p[len(root) :] for p in fs.find(inner) if p.startswith(root))


def makedirs(path: str, root: str | None = None) -> None:
    """A folder and its parents; with root (a folder prep owns), every part below root made or entered without
    following a link."""
    if is_url(path):
        fs, inner = _fs(path)
        fs.makedirs(inner, exist_ok=True)
    elif root is not None:
        nofollow.makedirs(local(root), local(path))
    else:
        os.makedirs(local(path), exist_ok=True)


def remove(path: str, root: str | None = None) -> None:
    """Delete a file if it is there. With root (a folder prep owns): only a regular file, reached from root
    without following a link; a link, a folder or a symlinked folder on the way is left alone."""
    if is_url(path):
        fs, inner = _fs(path)
        if fs.exists(inner):
            fs.rm(inner)
        return
    if root is not None:
        nofollow.remove(local(root), local(path))
        return
    try:
        os.remove(local(path))
    except (FileNotFoundError, IsADirectoryError):
        pass


def remove_tree(path: str) -> None:
    """A folder and everything in it; locally never through a link (shutil.rmtree works by descriptors, and
    refuses a link given as the folder)."""
    if is_url(path):
        fs, inner = _fs(path)
        if fs.exists(inner):
            fs.rm(inner, recursive=True)
    else:
        shutil.rmtree(local(path), ignore_errors=True)


def write_bytes(path: str, data: bytes, root: str | None = None) -> None:
    """Write a whole file so that it appears complete or not at all, and never through a link: locally under a
    temporary name created exclusively, then renamed (prep.core.nofollow). With root (a folder prep owns),
    the folders from root down are reached without following links too."""
    if is_url(path):
        fs, inner = _fs(path)
        fs.pipe_file(inner, data)
        return
    if root is not None:
        nofollow.write_bytes(local(root), local(path), data)
    else:  # a folder the user named (prep-report -o): a temporary name of its own, nothing of theirs replaced
        nofollow.write_bytes(os.path.dirname(os.path.abspath(local(path))), local(path), data, owned=False)


class AtomicFile:
    """A file being written under a temporary name and published whole by commit().

    Local: `<name>.partial` beside the final name, created exclusively and never through a link (in a folder
    reached from root without links, where root is given), then a rename. Remote: a local temporary file,
    then one upload. abort() leaves nothing under the final name either way.
    """

    def __init__(self, path: str, buffering: int = 0, root: str | None = None) -> None:
        self.path = path
        self._local: nofollow.NewFile | None = None
        if is_url(path):
            handle, self._temp = tempfile.mkstemp(prefix="prep-", suffix=".partial")
            self.file = open(handle, "wb", buffering=buffering)
        else:
            folder = local(root) if root is not None else os.path.dirname(os.path.abspath(local(path)))
            self._local = nofollow.NewFile(folder, local(path), buffering, owned=root is not None)
            self.file = self._local.file

    @property
    def local_name(self) -> str:
        """A local path that names exactly the temporary file, for a library that opens files by name."""
        return self._local.temp_path if self._local is not None else self._temp

    def commit(self) -> None:
        if self._local is not None:
            self._local.commit()
            return
        self.file.close()
        fs, inner = _fs(self.path)
        try:
            fs.put_file(self._temp, inner)
        finally:
            os.remove(self._temp)

    def abort(self) -> None:
        if self._local is not None:
            self._local.abort()
            return
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.remove(self._temp)
        except FileNotFoundError:
            pass


def write_json(path: str, obj, root: str | None = None) -> None:
    """obj as prep writes its JSON files (indent 2, sorted keys, a final newline: json.dumps's bytes), streamed
    into a file that appears complete or not at all. A summary listing 900,000 skipped images is never one
    150 MB string, nor its bytes."""
    import json

    # Buffered: a raw write may write only part of what it is given (a disk filling up), and a buffered file
    # writes the rest or raises, where a raw one would publish a truncated file.
    out = AtomicFile(path, buffering=1 << 20, root=root)
    try:
        pending: list[str] = []
        size = 0
        for chunk in json.JSONEncoder(indent=2, sort_keys=True).iterencode(obj):
            pending.append(chunk)
            size += len(chunk)
            if size >= 1 << 20:
                out.file.write("".join(pending).encode("utf-8"))
                pending.clear()
                size = 0
        pending.append("\n")
        out.file.write("".join(pending).encode("utf-8"))
        out.commit()
    except BaseException as err:
        out.abort()
        if isinstance(err, OSError) and not err.filename:
            raise OSError(err.errno, err.strerror or str(err), path) from None  # the one line names the file
        raise

