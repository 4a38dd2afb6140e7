"""Sources: where images come from (a folder of files, scikit-learn's digits) and how a shard task reads one."""

from __future__ import annotations

import functools
import math
import os
import posixpath
import re
import stat
import threading
import unicodedata
from collections.abc import Iterator
from typing import NamedTuple

from prep import storage
from prep.errors import ConfigError, EncodeError, InputError

MISSING = "listed in the label file but missing from source.image_dir"
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")  # C:\\data\\x.jpg: a Windows absolute path
DEFAULT_MAX_IMAGE_BYTES = 256 << 20  # larger files are skipped before being read
# .jfif, .jpe and .pjpeg are JPEG under other names (browsers save them so); the encoder sniffs the real
# format from the bytes, so an extension only decides whether a file is offered at all.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".jpe", ".pjpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
MAX_LINE_BYTES = 1 << 20  # a label line is a name and a label: a longer one means a wrong or broken file
BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark: never part of a value, wherever an editor or `cat` left it
_CHUNK = 1 << 16


class LabelEntry(NamedTuple):
    """One labelled image as a label file (or a source with embedded labels) names it."""

    name: str
    label: str
    where: str  # "file:line" for messages
    ref: object = None  # set by sources that know how to find the image without a path
    extra: tuple | None = None  # the values of the label-file columns a splitter asked for (labels.columns)


def clean(value: str) -> str:
    """A value as the user means it: no U+FEFF anywhere, no invisible characters at either end.

    U+FEFF is a byte-order mark wherever it appears (files joined with `cat`, editors that add one); as a
    zero-width no-break space it has been deprecated since Unicode 3.2. At the ends, whitespace and format
    characters (zero-width spaces, direction marks) are invisible, so a label "3" followed by one is still 3.
    Inside a value they stay: they can be part of a real class name (emoji sequences use U+200D).
    """
    if value.isascii():  # the common case, and no ASCII character is a format character
        return value.strip()
    value = value.replace("\ufeff", "")
    start, end = 0, len(value)
    while start < end and _invisible(value[start]):
        start += 1
    while end > start and _invisible(value[end - 1]):
        end -= 1
    return value[start:end]


def _invisible(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) == "Cf"


class ImageDirSource:
    """A folder of encoded image files; label files name them by path relative to `image_dir`.

    Nothing outside the folder is ever read: paths that leave it are refused when planning, and every file
    is checked again when it is opened (a file swapped for a symlink during the run is refused then).
    """

    payload = "bytes"

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

    def _scan(self) -> "Listing":
        if self._listing is None:
            self.check()
            if storage.is_url(self.image_dir):
                self._listing = Listing.of_names(storage.find(self.image_dir))  # object stores have no symlinks
            else:
                self._listing = _walk(self.image_dir)
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


def _hidden(path: str) -> bool:
    return path.startswith(".") or "/." in path


def is_image_name(path: str) -> bool:
    """Whether a listed file is offered as an image: an image extension, and no hidden part in its path."""
    return path.lower().endswith(IMAGE_EXTENSIONS) and not _hidden(path)


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


class Listing:
    """Files below an image folder, and what the walk found about symlinks, in memory that stays small.

    The walk keeps a sorted array of the hashes of the usable files' relative paths (8 bytes a file), not
    the paths: `path in listing` is exact up to a 64-bit hash collision, and iter_files() walks again, in
    sorted order, when the names themselves are needed (class folders, examples of unlabelled images).
    dirs: the real folders; unusable: entries never converted, with the reason (symlinks leading outside
    the folder, broken links, FIFOs and devices, symlinked folders shown again under their real name);
    dir_aliases: symlinked folder -> the real folder inside image_dir it shows; linked: hashes of the paths
    whose file may have another name here (file symlinks, hard links): only they need identity's stat.
    """

    def __init__(self, hashes, image_hashes, names: list[str] | None = None, image_dir: str | None = None) -> None:
        from prep.table import sorted_unique

        self.hashes = sorted_unique(hashes)
        self.image_hashes = sorted_unique(image_hashes)  # files offered as images (extension, not hidden)
        self.dirs: set[str] = set()
        self.unusable: dict[str, str] = {}
        self.dir_aliases: dict[str, str] = {}
        self.linked: set[int] = set()
        self._names = names  # object storage: the listing's names (no second walk there)
        self._image_dir = image_dir
        self._nfc: dict[str, str] | None = None

    @classmethod
    def of_names(cls, names) -> "Listing":
        names = sorted(set(names))
        return cls([hash(name) for name in names], [hash(name) for name in names if is_image_name(name)], names)

    def __contains__(self, path: str) -> bool:
        hashes = self.hashes
        i = int(hashes.searchsorted(hash(path)))
        return i < len(hashes) and int(hashes[i]) == hash(path)

    def contains_many(self, paths: list[str]):
        """A bool array: which of the paths are files of the folder (one numpy search for all)."""
        import numpy as np

        from prep.table import sorted_contains

        return sorted_contains(self.hashes, np.fromiter(map(hash, paths), dtype=np.int64, count=len(paths)))

    def iter_files(self) -> Iterator[str]:
        """Every usable file, sorted, as relative posix paths (a second walk; names are not kept)."""
        if self._names is not None:
            yield from self._names
            return
        for kind, path, _ in _walk_entries(self._image_dir, os.path.realpath(self._image_dir)):
            if kind == "file":
                yield path

    def nfc(self) -> dict[str, str]:
        """NFC form -> name on disk, for the names that are not plain ASCII: macOS writes NFD names, label
        files usually hold NFC (or the reverse)."""
        if self._nfc is None:
            self._nfc = {}
            for name in self.iter_files():
                if not name.isascii():
                    self._nfc.setdefault(unicodedata.normalize("NFC", name), name)
        return self._nfc

    def through_alias(self, path: str) -> str | None:
        """The real path of a file named through a symlinked folder, if it is listed, else None."""
        if not self.dir_aliases:
            return path if path in self else None
        for _ in range(40):  # aliases can point into aliases; 40 as the kernel's symlink limit
            parts = path.split("/")
            for cut in range(len(parts) - 1, 0, -1):
                target = self.dir_aliases.get("/".join(parts[:cut]))
                if target is not None:
                    path = posixpath.normpath("/".join([target, *parts[cut:]]))
                    break
            else:
                return path if path in self else None
        return None


def _classify(entry: os.DirEntry, path: str, root: str) -> tuple[str, object]:
    """What one folder entry is: ("file", (inode, target inode or None)), ("dir", None), ("alias", real
    target) or ("unusable", reason). Only symlinks cost a stat: the rest comes from the directory listing."""
    try:
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if os.path.commonpath([root, target]) != root:
                return "unusable", "symlink points outside source.image_dir"
            if os.path.isdir(target):
                return "alias", target
            if os.path.isfile(target):
                return "file", (entry.inode(), os.stat(target).st_ino)  # identity() makes it its target again
            if os.path.exists(target):
                return "unusable", "not a regular file (a FIFO, socket or device)"
            return "unusable", "broken symlink (missing target or a loop)"
        if entry.is_dir(follow_symlinks=False):
            return "dir", None
        if entry.is_file(follow_symlinks=False):
            return "file", (entry.inode(), None)
        return "unusable", "not a regular file (a FIFO, socket or device)"
    except OSError as err:
        return "unusable", f"cannot use: {err.strerror or err}"


def _scandir(image_dir: str, rel: str):
    folder = os.path.join(image_dir, rel)
    try:
        return os.scandir(folder)
    except OSError as err:
        raise InputError(f"{folder}: cannot list folder: {err.strerror}") from None


def _walk_entries(image_dir: str, root: str) -> Iterator[tuple[str, str, object]]:
    """(kind, relative path, detail) of every entry below the folder, sorted by path, never into a symlinked
    folder; one folder's entries in memory at a time (a folder's contents sort as its name plus "/" among
    its siblings, which is where every path below it sorts)."""

    def children(rel: str):
        with _scandir(image_dir, rel) as entries:
            found = []
            for entry in entries:
                path = posixpath.join(rel, entry.name) if rel else entry.name
                kind, detail = _classify(entry, path, root)
                found.append((entry.name + "/" if kind == "dir" else entry.name, kind, path, detail))
        found.sort(key=lambda row: row[0])
        return iter(found)

    stack = [children("")]
    while stack:
        for _, kind, path, detail in stack[-1]:
            yield kind, path, detail
            if kind == "dir":
                stack.append(children(path))
                break
        else:
            stack.pop()


def _walk(image_dir: str) -> Listing:
    """List a local folder without following a symlinked folder into itself or out of the folder.

    As _walk_entries, unsorted, with a regular file (nearly every entry) handled inline: its path is hashed,
    its inode (from the directory listing, no stat) kept to find hard links.
    """
    from array import array

    import numpy as np

    from prep.table import repeated, sorted_contains, sorted_unique

    root = os.path.realpath(image_dir)
    hashes, inodes, images = array("q"), array("q"), array("q")
    symlinks, targets = [], set()
    dirs: set[str] = set()
    unusable: dict[str, str] = {}
    symlinked_dirs: list[tuple[str, str]] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        prefix = rel + "/" if rel else ""
        hidden = _hidden(rel) if rel else False
        with _scandir(image_dir, rel) as entries:
            for entry in entries:
                path = prefix + entry.name
                try:
                    regular = entry.is_file(follow_symlinks=False)  # a regular file: not a symlink, from d_type
                except OSError:
                    regular = False
                if regular:
                    key = hash(path)
                    hashes.append(key)
                    inodes.append(entry.inode())
                    if not hidden and entry.name[0] != "." and entry.name.lower().endswith(IMAGE_EXTENSIONS):
                        images.append(key)
                    continue
                kind, detail = _classify(entry, path, root)
                if kind == "file":
                    inode, target = detail
                    hashes.append(hash(path))
                    inodes.append(inode)
                    if is_image_name(path):
                        images.append(hash(path))
                    symlinks.append(hash(path))
                    targets.add(target)
                elif kind == "dir":
                    dirs.add(path)
                    stack.append(path)
                elif kind == "alias":
                    symlinked_dirs.append((path, detail))
                else:
                    unusable[path] = detail
    listing = Listing(hashes, images, image_dir=image_dir)
    listing.dirs, listing.unusable = dirs, unusable
    # Hard links share an inode; a file symlink's target is its file: those paths, and only those, are
    # checked by identity() (a stat each). Inode numbers of two devices can collide: then a few more stats.
    ino = np.frombuffer(inodes, dtype=np.int64) if inodes else np.zeros(0, dtype=np.int64)
    shared = sorted_unique(np.concatenate([repeated(ino), np.fromiter(targets, dtype=np.int64, count=len(targets))]))
    if len(shared):
        listing.linked = set(np.frombuffer(hashes, dtype=np.int64)[sorted_contains(shared, ino)].tolist())
    listing.linked.update(symlinks)
    for alias, target in symlinked_dirs:
        # The real folder is walked under its own name: the symlink is an alias, never walked (no loops,
        # no image listed twice under two class folders).
        real = os.path.relpath(target, root).replace(os.sep, "/") if target != root else "."
        listing.dir_aliases[alias] = real
        listing.unusable[alias] = f"a symlink to the folder {real} inside source.image_dir: its images are listed once, under {real}"
    return listing


@functools.lru_cache(maxsize=1)
def _digits():
    """(images uint8 Nx8x8, targets) of scikit-learn's digits, read from the file it ships.

    Reading digits.csv.gz directly takes 0.2 s; importing sklearn.datasets for load_digits takes 1.5 s.
    """
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if spec else ""
    if os.path.exists(path):
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        pixels, targets = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    else:  # a scikit-learn that stores the file elsewhere
        from sklearn.datasets import load_digits

        digits = load_digits()
        pixels, targets = digits.images, digits.target
    # 0..16 intensities -> 0..255, rounded the same way everywhere so shards are reproducible.
    return np.rint(pixels * (255.0 / 16.0)).astype(np.uint8), targets


class DigitsSource:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 10 classes): the embedded demo."""

    payload = "array"

    def check(self) -> None:
        pass

    def describe(self) -> str:
        return "sklearn.datasets.load_digits"

    def labelled_entries(self) -> list[LabelEntry]:
        _, targets = _digits()
        return [LabelEntry(f"digit_{i:04d}", str(int(t)), f"digits[{i}]", i) for i, t in enumerate(targets)]

    def read(self, ref: int):
        return _digits()[0][ref]


class PixelCsvSource:
    """MNIST-style CSV: one image per row, a label column and height x width (x channels) pixel columns.

    The planner scans the file once for labels and row offsets; shard tasks seek to their rows, so the
    file is streamed, never loaded whole. Bad rows are reported per image with their line numbers.
    """

    payload = "array"
    header_fix = "set source.header=true"  # how a header line is skipped, for the reader's label-kind messages

    def __init__(self, path: str, shape: list[int] | tuple[int, ...] = (28, 28), label_column: int = 0, header: bool = False) -> None:
        if not path:
            raise InputError("source.path is not set: give the pixel CSV, e.g. source.path=mnist_train_small.csv")
        shape = tuple(int(n) for n in shape)
        if len(shape) not in (2, 3) or min(shape) < 1 or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
            raise InputError(f"source.shape={list(shape)}: expected [height, width] or [height, width, channels of 1, 3 or 4]")
        self.path = path
        self.shape = shape
        self.columns = 1 + math.prod(shape)
        if not 0 <= label_column < self.columns:
            raise InputError(f"source.label_column={label_column}: must be 0..{self.columns - 1} for {self.columns} columns")
        self.label_column = label_column
        self.header = header
        self._file = None
        self._lock = threading.Lock()  # shard tasks may read on several threads; the file position is shared

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_lock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def check(self) -> None:
        if not storage.isfile(self.path):
            if storage.isdir(self.path):
                raise InputError(f"source.path={self.path}: is a folder, expected the pixel CSV file")
            if storage.exists(self.path):  # opening a FIFO would wait for a writer forever
                raise InputError(f"source.path={self.path}: not a regular file (a FIFO, socket or device), expected the pixel CSV file")
            raise InputError(f"source.path={self.path}: no such file")

    def describe(self) -> str:
        return self.path

    def stamp(self, ref) -> str | None:
        """The CSV's size and modification time: a resumed run rewrites every shard if the file changed."""
        try:
            if storage.is_url(self.path):
                info = storage.info(self.path)
                return f"{info.get('size')}:{info.get('ETag') or info.get('mtime') or info.get('LastModified')}"
            st = os.stat(self.path)
            return f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            return None

    def labelled_entries(self) -> list[LabelEntry]:
        self.check()
        out = []
        base = os.path.basename(self.path)
        # A row holds `columns` numbers: allow a generous 64 bytes each before calling a line broken.
        max_bytes = max(MAX_LINE_BYTES, 64 * self.columns)
        try:
            with storage.open_read(self.path) as f:
                offset = 0
                for number, line in read_lines(f, self.path, max_bytes):
                    start, offset = offset, offset + len(line)
                    if number == 1 and self.header:
                        self._check_header_row(line.replace(BOM, b"").strip())
                        continue
                    text = line.replace(BOM, b"").strip()
                    if not text:
                        continue
                    if number == 1:
                        self._check_first_row(text)
                    cells = text.split(b",", self.label_column + 1)
                    raw = cells[self.label_column].strip() if len(cells) > self.label_column else b""
                    try:
                        label = clean(raw.decode("utf-8"))
                    except UnicodeDecodeError:
                        raise InputError(f"{self.path}:{number}: the label {raw[:60]!r} is not UTF-8 text") from None
                    if not label:
                        raise InputError(f"{self.path}:{number}: no label in column {self.label_column}: {text[:60]!r}")
                    out.append(LabelEntry(f"{base}:{number}", label, f"{self.path}:{number}", (start, len(line), number)))
        except OSError as err:
            raise InputError(f"source.path={self.path}: cannot read: {err.strerror or err}") from None
        return out

    def _check_header_row(self, text: bytes) -> None:
        """source.header=true on a file without one would drop the first image silently: a header has a
        word in it, or numbers the columns (0,1,2,... as pandas writes them)."""
        cells = [c.strip() for c in text.split(b",")]
        if cells and all(_is_number(c) for c in cells) and not _numbers_columns(cells):
            raise InputError(
                f"{self.path}:1: source.header=true, but the first row is pixel values, not a header: "
                "set source.header=false (or leave it out)"
            )

    def _check_first_row(self, text: bytes) -> None:
        """A first row whose pixel columns are not numbers is a header: reading it as an image would fail anyway.
        So is one that numbers the columns 0,1,2,... (pandas' to_csv): it would pass as an image."""
        if _numbers_columns([c.strip() for c in text.split(b",")]):
            raise InputError(
                f"{self.path}:1: the first row numbers the columns (0,1,2,...): it is a header line, set source.header=true"
            )
        cells = text.split(b",")
        pixels = cells[: self.label_column] + cells[self.label_column + 1 :]
        bad = next((c.strip() for c in pixels if not _is_number(c)), None)
        if bad is not None:
            raise InputError(
                f"{self.path}:1: the first row is not pixel values ({bad.decode('utf-8', 'replace')[:30]!r} is not a number): "
                "if it is a header line, set source.header=true"
            )

    def read(self, ref: tuple[int, int, int]):
        import numpy as np

        offset, size, number = ref
        with self._lock:
            if self._file is None:
                self._file = storage.open_read(self.path)
            self._file.seek(offset)
            line = self._file.read(size)
        cells = line.replace(BOM, b"").strip().split(b",")
        if len(cells) != self.columns:
            raise EncodeError(f"line {number}: expected {self.columns} columns (label + {self.columns - 1} pixels), got {len(cells)}")
        del cells[self.label_column]
        try:
            values = np.array([float(c) for c in cells])
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise EncodeError(f"line {number}: non-numeric pixel {bad.decode('utf-8', 'replace')!r}") from None
        if values.min() < 0 or values.max() > 255 or not np.all(values == np.round(values)):
            bad = next(v for v in values if v < 0 or v > 255 or v != round(v))
            raise EncodeError(f"line {number}: pixel value {bad:g} is not an integer in 0..255")
        return values.astype(np.uint8).reshape(self.shape)


def _numbers_columns(cells: list[bytes]) -> bool:
    """0,1,2,...,n-1 or 1,2,...,n: a header that names columns by their numbers."""
    if len(cells) < 3 or not all(c.isdigit() for c in cells):
        return False
    first = int(cells[0])
    return first in (0, 1) and all(int(c) == first + i for i, c in enumerate(cells))


def _is_number(cell: bytes) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def looks_like_utf16(head: bytes) -> bool:
    """A UTF-16 byte-order mark, or ASCII text with a NUL beside every character (UTF-16 without one)."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    sample = head[:4096]
    return len(sample) >= 4 and max(sample[0::2].count(0), sample[1::2].count(0)) * 4 >= len(sample)


def read_lines(f, path: str, max_bytes: int = MAX_LINE_BYTES, universal: bool = False) -> Iterator[tuple[int, bytes]]:
    """(line number, line with its line break) of a binary text stream, holding at most ~max_bytes of a line.

    Line breaks are b"\\n", or with `universal` also b"\\r\\n" and a lone b"\\r" (old Mac / Excel CSV) as
    Python's text mode reads them. A file without line breaks is never read into memory whole: a line
    over max_bytes, a NUL byte or UTF-16 text is an InputError naming the file and line, since each means
    this is not the text file it should be.
    """
    number = 0
    pending = b""
    first = True
    while True:
        chunk = f.read(_CHUNK)
        if first:
            first = False
            if looks_like_utf16(chunk):
                raise InputError(f"{path}: looks like UTF-16 text; save it as UTF-8")
        data = pending + chunk if pending else chunk
        # Splitting a whole chunk in C keeps a million-line file fast; the checks per line run only when
        # the chunk has a NUL or is long enough to hold an over-long line.
        lines = data.splitlines(keepends=True) if universal else data.split(b"\n")
        if universal:
            if chunk and lines and not lines[-1].endswith(b"\n"):
                pending = lines.pop()  # unfinished, or a \r whose \n may start the next chunk
            else:
                pending = b""
        else:
            pending = lines.pop()
            lines = [line + b"\n" for line in lines]
            if not chunk and pending:
                lines.append(pending)
                pending = b""
        if b"\0" in data or len(data) > max_bytes:
            for offset, line in enumerate(lines, start=number + 1):
                _checked_line(line, path, offset, max_bytes)
            _checked_line(pending, path, number + len(lines) + 1, max_bytes)
        yield from enumerate(lines, start=number + 1)
        number += len(lines)
        if not chunk:
            return


def _checked_line(line: bytes, path: str, number: int, max_bytes: int) -> bytes:
    if len(line) > max_bytes + 2:  # + the line break
        raise InputError(
            f"{path}:{number}: a line longer than {max_bytes} bytes: this does not look like a text file with one entry per line"
        )
    if b"\0" in line:
        raise InputError(f"{path}:{number}: a NUL byte: this does not look like a text file (save it as plain UTF-8 text)")
    return line

