"""ImageDirSource: images as files under a folder, each opened once and checked to stay inside it."""

from __future__ import annotations

import os
import posixpath
import re
import stat
import unicodedata
from collections.abc import Iterator

from prep.core import storage
from prep.core.errors import ConfigError, EncodeError, InputError
from prep.sources.base import LabelEntry, Source
from prep.sources.walk import Listing, is_image_name, walk

MISSING = "listed in the label file but missing from source.image_dir"
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")  # C:\\data\\x.jpg: a Windows absolute path
DEFAULT_MAX_IMAGE_BYTES = 256 << 20  # larger files are skipped before being read

class ImageDirSource(Source):
    """A folder of encoded image files; label files name them by path relative to `image_dir`.

    Nothing outside the folder is ever read: paths that leave it are refused when planning, and every file
    is checked again when it is opened (a file swapped for a symlink during the run is refused then).
    """

    payload = "bytes"
    lists_files = True

    def __init__(self, image_dir: str, extension: str | None = None, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> None:
        if not image_dir:
            raise InputError("source.image_dir is not set: give the folder of images, e.g. source.image_dir=/data/val")
        if extension and not extension.startswith("."):
            extension = "." + extension
        if isinstance(max_image_bytes, bool) or not isinstance(max_image_bytes, int) or max_image_bytes < 1:
            raise ConfigError(f"max_image_bytes={max_image_bytes}: must be a positive number of bytes")
        self.image_dir = image_dir
        self.extension = extension or None
        self.max_image_bytes = max_image_bytes
        self._root: str | None = None  # the folder's real path, for the read-time check
        self._listing: Listing | None = None

    def __getstate__(self) -> dict:
        # Shard tasks only read files; the folder listing stays with the planner.
        return {**self.__dict__, "_listing": None}

    def check(self) -> None:
        if not storage.isdir(self.image_dir):
            raise InputError(f"source.image_dir={self.image_dir}: no such folder")

    def describe(self) -> str:
        return self.image_dir

    def input_paths(self) -> list[str]:
        return [self.image_dir]

    def _scan(self) -> "Listing":
        if self._listing is None:
            self.check()
            if storage.is_url(self.image_dir):
                self._listing = Listing.of_names(storage.find(self.image_dir))  # object stores have no symlinks
            else:
                self._listing = walk(self.image_dir)
        return self._listing

    def release(self) -> None:
        """Forget the folder listing once planning is done (it is walked again if asked for)."""
        self._listing = None

    def files(self) -> Iterator[str]:
        """Every file below the folder, sorted, as relative posix paths (symlinked folders not expanded)."""
        return self._scan().iter_files()

    def image_files(self) -> Iterator[str]:
        return (f for f in self.files() if is_image_name(f))

    def image_hashes(self):
        """The sorted hashes of the image files' relative paths (what the reader compares labelled names with)."""
        return self._scan().image_hashes

    def resolve_many(self, names: list[str]) -> list:
        """resolve() of every name, as a ref or the EncodeError saying why not: a name that is exactly a
        listed file (the common case) costs one hash lookup, found for all names at once."""
        listing = self._scan()
        found = listing.contains_many(names)
        if not self.extension and found.all():
            return names  # every name is a listed path, already relative and normalized
        out = []
        for name, hit in zip(names, found.tolist()):
            if hit and not (self.extension and not posixpath.splitext(name)[1]):
                out.append(name)  # a listed path is already relative and normalized
                continue
            if not hit and self._plainly_missing(listing, name):
                out.append(EncodeError(MISSING))
                continue
            try:
                out.append(self.resolve(name))
            except EncodeError as err:
                out.append(err)
        return out

    def _plainly_missing(self, listing: "Listing", name: str) -> bool:
        """True when resolve(name) could only say MISSING, known without its variants: a plain relative ASCII
        name (no spaces at its ends, no backslash, normalized) is its only variant, and with no symlinked folder
        and no file whose NFC form it is, not listed means missing. A label file naming many absent images (a
        subset of a dataset with the full label file) costs a few lookups each, not the variant search."""
        return (
            not self.extension
            and not listing.dir_aliases
            and name.isascii()
            and name == name.strip()
            and "\\" not in name
            and "\0" not in name
            and not name.startswith("/")
            and not _DRIVE.match(name)
            and posixpath.normpath(name) == name
            and name != ".."
            and not name.startswith("../")
            and name not in listing.unusable
            and name not in listing.dirs
            and name not in listing.nfc()
        )

    def resolve(self, name: str) -> str:
        """The relative path of a named image; EncodeError with the reason when it cannot be used.

        The name as written is tried first, then with Windows separators and surrounding spaces undone
        (` lead.jpg`, `a\\b.png` and `9:30.png` are legal file names on Linux), each also in the other Unicode
        normalization (NFC/NFD).
        """
        if "\0" in name:
            raise EncodeError("the name contains a NUL character")
        listing = self._scan()
        for variant in dict.fromkeys(v for v in (name, name.replace("\\", "/"), name.strip(), name.strip().replace("\\", "/")) if v):
            path = variant
            if self.extension and not posixpath.splitext(path)[1]:
                path += self.extension
            if path.startswith("/") or _DRIVE.match(path):
                raise EncodeError("absolute path: label files name images relative to source.image_dir")
            path = posixpath.normpath(path)
            if path == ".." or path.startswith("../"):
                raise EncodeError("path escapes source.image_dir")
            for candidate in (path, listing.nfc().get(unicodedata.normalize("NFC", path))):
                if candidate is None:
                    continue
                if candidate in listing.unusable:
                    raise EncodeError(listing.unusable[candidate])
                if candidate in listing.dirs:
                    raise EncodeError("a folder, not an image file")
                if candidate in listing or listing.through_alias(candidate) is not None:
                    return candidate
        raise EncodeError(MISSING)

    def identity(self, ref: str) -> object:
        """The file itself, whatever name reached it: a symlink or a hard link to a file already listed is
        that file again (device and inode), never a second image."""
        if storage.is_url(self.image_dir):
            return ref
        listing = self._scan()
        # Only a path that may share its file is looked at: a file symlink or a hard link; in a folder with a
        # symlinked folder, every path (one file is then reachable through the alias and by its real path).
        if not listing.dir_aliases and hash(ref) not in listing.linked:
            return ref
        try:
            st = os.stat(os.path.join(self.image_dir, ref))
        except OSError:
            return ref
        return (st.st_dev, st.st_ino)

    def identities(self, refs: list[str]) -> list:
        """identity() of many refs: the refs themselves when the folder has no linked files or aliases."""
        listing = self._scan()
        if storage.is_url(self.image_dir) or not (listing.linked or listing.dir_aliases):
            return refs
        return [self.identity(ref) for ref in refs]

    def unusable(self) -> dict[str, str]:
        """Entries of the folder that are never converted, with the reason (for labels=subdirs to report)."""
        return dict(self._scan().unusable)

    def labelled_entries(self) -> list[LabelEntry]:
        raise InputError("source=image_dir has no labels of its own: choose labels=space|jsonl|csv|subdirs")

    def stamp(self, ref: str) -> str | None:
        """Size and modification time: what resume compares to know a file is unchanged."""
        try:
            if storage.is_url(self.image_dir):
                info = storage.info(storage.join(self.image_dir, ref))
                return f"{info.get('size')}:{info.get('ETag') or info.get('mtime') or info.get('LastModified')}"
            st = os.stat(os.path.join(self.image_dir, ref))
            return f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            return None

    def read(self, ref: str) -> bytes:
        return self.read_stamped(ref)[0]

    def read_stamped(self, ref: str) -> tuple[bytes, str | None]:
        """The file's bytes and its stamp, read only if it is a regular file inside the folder and not too large."""
        if storage.is_url(self.image_dir):
            path = storage.join(self.image_dir, ref)
            try:
                size = storage.info(path).get("size")
                if isinstance(size, int) and size > self.max_image_bytes:
                    raise EncodeError(f"{size:,} bytes is over max_image_bytes={self.max_image_bytes:,}")
                return storage.read_bytes(path), self.stamp(ref)
            except OSError as err:
                raise EncodeError(f"cannot read: {err.strerror or err}") from None
        if self._root is None:
            self._root = os.path.realpath(self.image_dir)
        try:
            fd = os.open(os.path.join(self.image_dir, ref), _READ_FLAGS)
        except OSError as err:
            raise EncodeError(f"cannot read: {err.strerror or err}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise EncodeError("not a regular file")
            # By the path the kernel opened, after every symlink: a file or folder swapped for a symlink, or a
            # folder moved out of image_dir, during the run is not read. (Folder descriptors kept open would
            # save this call, but they follow a folder wherever it is moved.)
            if not _opened_inside(fd, self._root):
                raise EncodeError("symlink points outside source.image_dir")
            if st.st_size > self.max_image_bytes:
                raise EncodeError(f"{st.st_size:,} bytes is over max_image_bytes={self.max_image_bytes:,}")
            data = _read_all(fd, st.st_size, self.max_image_bytes)
            return data, f"{st.st_size}:{st.st_mtime_ns}"
        except OSError as err:
            raise EncodeError(f"cannot read: {err.strerror or err}") from None
        finally:
            os.close(fd)


# O_NONBLOCK: a FIFO swapped in for an image must not hang the run; regular files ignore it.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def _read_all(fd: int, size: int, limit: int) -> bytes:
    """Read to the end: one read of the size fstat gave, more only if the file grew (never past the limit)."""
    data = os.read(fd, size + 1)
    if len(data) <= size:
        return data
    chunks = [data]
    total = len(data)
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise EncodeError(f"grew past max_image_bytes={limit:,} while being read")
        chunks.append(chunk)


def _opened_inside(fd: int, root: str) -> bool:
    """Whether the file behind fd lies inside root, by the path the kernel opened (after every symlink)."""
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return True  # no /proc (not Linux): the planning-time check stands alone
    return real == root or real.startswith(root.rstrip("/") + "/")
