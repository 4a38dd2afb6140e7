"""The folder walk behind ImageDirSource: one listing of every file, held as sorted 64-bit name hashes."""

from __future__ import annotations

import os
import posixpath
import unicodedata
from collections.abc import Iterator

from prep.core.errors import InputError

# .jfif, .jpe and .pjpeg are JPEG under other names (browsers save them so); the encoder sniffs the real
# format from the bytes, so an extension only decides whether a file is offered at all.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".jpe", ".pjpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")


def _hidden(path: str) -> bool:
    return path.startswith(".") or "/." in path


def is_image_name(path: str) -> bool:
    """Whether a listed file is offered as an image: an image extension, and no hidden part in its path."""
    return path.lower().endswith(IMAGE_EXTENSIONS) and not _hidden(path)


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
        from prep.core.table import sorted_unique

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

        from prep.core.table import sorted_contains

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


def walk(image_dir: str) -> Listing:
    """List a local folder without following a symlinked folder into itself or out of the folder.

    As _walk_entries, unsorted, with a regular file (nearly every entry) handled inline: its path is hashed,
    its inode (from the directory listing, no stat) kept to find hard links.
    """
    from array import array

    import numpy as np

    from prep.core.table import repeated, sorted_contains, sorted_unique

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
