"""Local files inside a folder prep owns, reached, written and deleted without ever following a link.

A run folder may be shared (group-writable) or handed over by someone else, so a symlink can be planted at
any name prep writes (`report.html.partial`, `.hydra/`, a shard's `.partial`) or under any folder it
walks. Every path here is split into a root, opened as the user named it (following links there is the
user's own choice, e.g. outputs/ on another disk), and the parts below it, each opened relative to its
parent's descriptor with O_NOFOLLOW: a link on the way is an error, never a way out. A file is written under
a temporary name created exclusively (O_CREAT | O_EXCL | O_NOFOLLOW), then renamed over the final name
(a rename replaces a link planted there, it never writes through it). Only regular files are deleted.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from contextlib import contextmanager

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
TEMP = ".partial"  # what a file is called while it is written (a shard task's `<shard>.partial` too)


def parts_below(root: str, path: str) -> list[str]:
    """The names from root down to path; ValueError for a path that is not below root."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == "." or rel.startswith(".." + os.sep) or rel == ".." or os.path.isabs(rel):
        raise ValueError(f"{path} is not inside {root}")
    return rel.split(os.sep)


class LinkError(OSError):
    """A symbolic link where a file of prep's folder, or a folder on its way, belongs (errno ELOOP)."""


LINK = "is a symbolic link"


def _is_link(name: str, folder: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_path(root: str, names: list[str], last_flags: int | None = None, create: bool = False, why: str = "") -> int:
    """A descriptor of root/names[0]/...: root opened as named, each folder below it without following a link
    (made where missing when `create`), the last name opened with `last_flags` (a folder when None).
    LinkError names the first part that is a link ("<path>: [its folder X ]is a symbolic link<why>"); any other
    OSError names the whole path."""
    path = os.path.join(root, *names)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for depth, name in enumerate(names):
            last = depth == len(names) - 1
            flags = last_flags if last and last_flags is not None else _DIR
            try:
                child = os.open(name, flags, 0o644, dir_fd=fd)
            except FileNotFoundError:
                if not create or flags != _DIR:
                    raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from None
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile (another shard task): opened below like any folder
                child = os.open(name, _DIR, dir_fd=fd)
            except OSError as err:
                if _is_link(name, fd):
                    where = "" if last else f"its folder {'/'.join(names[: depth + 1])} "
                    raise LinkError(errno.ELOOP, where + LINK + why, path) from None
                raise OSError(err.errno, err.strerror, path) from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_folder(root: str, names: list[str], create: bool = False) -> int:
    """A descriptor of the folder root/names...; every part below root reached without following a link."""
    return open_path(root, names, create=create, why=": prep never writes through one")


@contextmanager
def parent(root: str, path: str, create: bool = False):
    """(descriptor of the folder holding path, the file's name), the folder reached from root without links."""
    names = parts_below(root, path)
    fd = open_folder(root, names[:-1], create=create)
    try:
        yield fd, names[-1]
    finally:
        os.close(fd)


def create_new(fd: int, name: str) -> int:
    """A new, empty regular file `name` in the folder fd, opened for writing. A leftover of a stopped run (or a
    link planted there) under that name is removed first: unlinking a link removes the link, not its target."""
    try:
        return os.open(name, _NEW, 0o644, dir_fd=fd)
    except FileExistsError:
        try:
            if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a folder", name) from None
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            pass
        return os.open(name, _NEW, 0o644, dir_fd=fd)


def file_object(fd: int, path: str, buffering: int):
    """The Python file over a new file's descriptor (path: its temporary name, for messages and for tests that
    stand in a full disk here)."""
    try:
        return open(fd, "wb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


class NewFile:
    """A file written under `<name>.partial` in a folder reached without links, published by commit() with
    one rename; abort() leaves nothing under either name. `file` is a Python file object on the new file."""

    def __init__(self, root: str, path: str, buffering: int = 0, owned: bool = True) -> None:
        """owned: root is a folder prep owns, where `<name>.partial` is prep's own name (a leftover of a stopped
        run is replaced). Elsewhere (prep-report -o) the temporary name is a new one, and nothing is removed."""
        self.path = path
        names = parts_below(root, path)
        self._dir = open_folder(root, names[:-1], create=True)
        self._name = names[-1]
        self._temp = self._name + TEMP
        try:
            if owned:
                fd = create_new(self._dir, self._temp)
            else:
                fd = self._create_unique()
            self.file = file_object(fd, os.path.join(os.path.dirname(path), self._temp), buffering)
        except BaseException:
            os.close(self._dir)
            raise

    def _create_unique(self) -> int:
        for _ in range(100):
            self._temp = f".{self._name}.{secrets.token_hex(4)}{TEMP}"
            try:
                return os.open(self._temp, _NEW, 0o644, dir_fd=self._dir)
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, "no free temporary name", self.path)

    def commit(self) -> None:
        """Publish the file; if this fails, abort() still removes the temporary file."""
        self.file.close()
        os.replace(self._temp, self._name, src_dir_fd=self._dir, dst_dir_fd=self._dir)
        self._close_dir()

    def abort(self) -> None:
        """Remove the temporary file; safe to call more than once, and after a failed commit."""
        if self._dir is None:
            return
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self._temp, dir_fd=self._dir)
        except OSError:
            pass
        self._close_dir()

    def _close_dir(self) -> None:
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None

    @property
    def temp_path(self) -> str:
        """The temporary file by a name that leads to exactly this file (for a library that opens files by name)."""
        return f"/proc/self/fd/{self.file.fileno()}"


def write_bytes(root: str, path: str, data: bytes, owned: bool = True) -> None:
    out = NewFile(root, path, owned=owned)
    try:
        view = memoryview(data)
        while view:
            view = view[out.file.write(view) :]  # a raw file may take part of a write (a disk filling up)
        out.commit()
    except BaseException:
        out.abort()
        raise


def remove(root: str, path: str) -> bool:
    """Delete path if it is a regular file reached from root without links; True if it was deleted. Anything
    else (missing, a link, a folder, a FIFO, a symlinked folder on the way) is left alone."""
    try:
        with parent(root, path) as (fd, name):
            if not stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                return False
            os.unlink(name, dir_fd=fd)
            return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            return False
        raise


def remove_folder(root: str, path: str) -> bool:
    """Remove an empty folder reached from root without links; False where it is not empty, missing or a link."""
    try:
        with parent(root, path) as (fd, name):
            if not stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                return False
            os.rmdir(name, dir_fd=fd)
            return True
    except OSError:
        return False


READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO opens without blocking, then is refused


def open_file(root: str, names: list[str], flags: int = READ, why: str = "") -> int:
    """A descriptor of the regular file root/names..., reached without following a link below root. OSError
    naming the file otherwise: LinkError for a link (the file or a folder on its way), FileNotFoundError,
    IsADirectoryError, EINVAL for a FIFO, socket or device (never blocked on)."""
    return regular(open_path(root, names, last_flags=flags, why=why), os.path.join(root, *names))


def regular(fd: int, path: str) -> int:
    """fd, set blocking, if it is a regular file (opened without blocking: a FIFO never hangs); else it is
    closed and an OSError names path (a folder, a FIFO, socket or device)."""
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", path)
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)", path)
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_read(root: str, path: str):
    """A regular file below root for reading, reached without links (O_NOFOLLOW at every part)."""
    return os.fdopen(open_file(root, parts_below(root, path)), "rb")


def makedirs(root: str, path: str) -> None:
    os.close(open_folder(root, parts_below(root, path), create=True))
