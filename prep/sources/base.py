"""The source interface (Source), the labelled-entry row every label format yields, and how a value is cleaned.

A source subclasses Source and fills in `describe` and `read`; every other hook has a default that says
"not this kind of source". A folder of named files (ImageDirSource) also answers the naming hooks; a source
that carries its own labels (digits, pixel CSV) answers `labelled_entries`. Shard tasks pickle sources to
the workers, so a source keeps its planning state out of its pickled form (`__getstate__`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from prep.core.errors import EncodeError, InputError
from prep.core.values import Payload


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


class Source:
    payload: str = "bytes"  # what `read` returns: "bytes" of an encoded image file, or an "array" of uint8 pixels
    header_fix: str = "remove that line"  # how a header line is skipped, for the label-kind messages
    lists_files: bool = False  # a folder of named files: labels=subdirs, label files naming paths, unlabelled images
    one_shape: bool = False  # every image has the same height, width and channels (a pixel CSV's source.shape)

    def check(self) -> None:
        """Refuse, with one line, a source that cannot be read at all (a missing folder or file)."""

    def describe(self) -> str:
        """The source in a message: its folder or file."""
        raise NotImplementedError

    def input_paths(self) -> list[str]:
        """The files and folders the run reads, so output_dir can be checked against them."""
        return []

    def read(self, ref) -> Payload:
        """One image, by the ref planning gave it; EncodeError for an image that cannot be read."""
        raise NotImplementedError

    def stamp(self, ref) -> str | None:
        """What resume compares to know the image is unchanged (size and modification time), or None."""
        return None

    def read_stamped(self, ref) -> tuple[Payload, str | None]:
        """The payload and its stamp; a source that can takes both from one open of the file."""
        return self.read(ref), self.stamp(ref)

    def release(self) -> None:
        """Every name is resolved: drop what planning needed (a folder's listing) before the shards are written."""

    # A source that carries its own labels (labels=embedded).
    def labelled_entries(self) -> Iterable[LabelEntry]:
        raise InputError(f"labels=embedded needs a source with labels of its own (digits, pixel_csv), not {self.describe()}")

    # A folder of named files (lists_files).
    def resolve(self, name: str):
        """The ref of the file a label file names; EncodeError (a skip) where no usable file has that name."""
        raise InputError(f"{self.describe()}: its images have no file names for a label file to name; use labels=embedded")

    def resolve_many(self, names: list[str]) -> list:
        """resolve() of every name, an EncodeError in place of each name that fails."""
        out = []
        for name in names:
            try:
                out.append(self.resolve(name))
            except EncodeError as err:
                out.append(err)
        return out

    def identity(self, ref) -> object:
        """What tells one file from another where two names may lead to one file (a symlink, a hard link)."""
        return ref

    def identities(self, refs: list) -> list:
        """identity() of every ref; `refs` itself where every file is its own name (no link), to save the copy."""
        keys = [self.identity(ref) for ref in refs]
        return refs if keys == refs else keys

    def files(self) -> Iterator[str]:
        """Every file of the folder, sorted, as relative paths."""
        raise InputError(f"{self.describe()} is not a folder of files: use source=image_dir")

    def image_files(self) -> Iterator[str]:
        """The files offered as images (an image extension, nothing hidden), sorted."""
        raise InputError(f"{self.describe()} is not a folder of files: use source=image_dir")

    def image_hashes(self):
        """The images' path hashes as a sorted int64 array, where the listing holds them (a fast unlabelled check)."""
        return None

    def unusable(self) -> dict[str, str]:
        """Paths in the folder that can never be read (links leading out, FIFOs), with the reason."""
        return {}
