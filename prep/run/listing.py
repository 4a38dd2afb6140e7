"""The reader stage: joins a source with its labels into the item table, in label-file order."""

from __future__ import annotations

import logging
import re
import unicodedata
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from prep.core.errors import EncodeError, InputError
from prep.core.table import ItemTable, Strings, StringsBuilder, sorted_contains
from prep.core.values import Skip
from prep.labels.base import check_kind, excerpt
from prep.sources.base import LabelEntry

log = logging.getLogger(__name__)
# ASCII digits with an optional sign, nothing else: "1.0", "1e3", "１" (fullwidth) and "1 000" are not
# integers, so none of them can quietly become one (or quietly turn a dataset into class names).
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?[0-9]+[eE][+-]?[0-9]+")
_HEADER_FIX = "remove that line"


class LabelBound(NamedTuple):
    """The lowest or highest label id and where it comes from: what a writer checks against its stored types."""

    value: int
    text: str  # the label as the file writes it (an id can be too long to print)
    where: str


@dataclass
class Listing:
    items: ItemTable
    class_names: list[str] | None  # class id -> name when labels are names; None for integer labels
    skipped: list[Skip] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)  # the first images on disk that no label names
    ignored: list[str] = field(default_factory=list)  # files in image_dir not converted (unknown extension, hidden)
    label_bounds: tuple[LabelBound, LabelBound] | None = None  # (lowest, highest) label id of every entry
    # label-file columns a splitter asked for: column -> {item name: (value, "file:line")}
    fields: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    unlabelled_count: int | None = None  # all images no label names (unlabelled holds the first 20); None: len(unlabelled)

    def __post_init__(self) -> None:
        if not isinstance(self.items, ItemTable):
            self.items = ItemTable.of(self.items)
        if self.unlabelled_count is None:
            self.unlabelled_count = len(self.unlabelled)

    @property
    def label_map(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.class_names or [])}


def parse_int(text: str) -> int:
    """An integer label of any length, exactly.

    int() refuses strings of more than 4,300 digits (a guard against quadratic conversion); halving long
    ones keeps the work small (a 1 MiB line: half a second), so a huge label is reported as out of range
    like any other instead of failing with Python's own message.
    """
    negative = text.startswith("-")
    digits = text.lstrip("+-").lstrip("0") or "0"
    value = _digits_to_int(digits)
    return -value if negative else value


def _digits_to_int(digits: str) -> int:
    if len(digits) <= 600:  # below the lowest limit Python can be configured to (640)
        return int(digits)
    half = len(digits) // 2
    return _digits_to_int(digits[:half]) * 10 ** (len(digits) - half) + _digits_to_int(digits[half:])


class LabelTexts:
    """The distinct label texts of a label file, in order of first appearance, with counts and first lines:
    what decides the label kind and the ids, kept per distinct value (a thousand classes), not per entry."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.texts: list[str] = []
        self.counts: list[int] = []
        self.first: list[tuple[int, str]] = []  # (entry index, where) of the first entry with the text

    def add(self, text: str, index: int, where: str) -> int:
        code = self.codes.get(text)
        if code is None:
            code = self.codes[text] = len(self.texts)
            self.texts.append(text)
            self.counts.append(0)
            self.first.append((index, where))
        self.counts[code] += 1
        return code

    def ids(self, kind: str = "auto", header_fix: str = _HEADER_FIX) -> tuple[list[int], list[str] | None]:
        """The id of every distinct text, and the class names (None when labels are integers), as
        `labels.kind` says: see label_ids."""
        kind = check_kind(kind)
        is_int = [_INTEGER.fullmatch(text) is not None for text in self.texts]
        ints = sum(count for count, yes in zip(self.counts, is_int) if yes)
        names = sum(self.counts) - ints
        if kind == "auto" and self.texts and ints == 0 and all(_DECIMAL.fullmatch(text) for text in self.texts):
            code = min(range(len(self.texts)), key=lambda c: self.first[c][0])
            raise InputError(
                f"{self.first[code][1]}: every label is a number but not an integer (e.g. {excerpt(self.texts[code])}, as pandas writes "
                "integer columns with a gap); write them as integers, or set labels.kind=name to use them as class names "
                "(ids by sorted text: '10.0' before '2.0')"
            )
        if kind == "name" or (kind == "auto" and ints == 0):
            # One class, however its name was typed: NFC and NFD spellings of "café" are the same name.
            texts = [unicodedata.normalize("NFC", text) for text in self.texts]
            sorted_names = sorted(set(texts))
            index = {name: i for i, name in enumerate(sorted_names)}
            return [index[text] for text in texts], sorted_names
        if names:
            raise InputError(self._kind_mismatch(is_int, ints, names, kind, header_fix))
        return [int(text) if len(text) <= 600 else parse_int(text) for text in self.texts], None

    def _kind_mismatch(self, is_int: list[bool], ints: int, names: int, kind: str, header_fix: str) -> str:
        """The message for labels of both kinds: the minority kind's first example, and what to set."""
        def first_of(want: bool) -> int:
            return min((c for c in range(len(self.texts)) if is_int[c] == want), key=lambda c: self.first[c][0])

        if kind == "auto" and ints < names:
            code = first_of(True)
            text, where = self.texts[code], self.first[code][1]
            return (
                f"{where}: label {excerpt(text)} is an integer, but {_others(names)} class names "
                f"(labels.kind=auto); fix the value, or set labels.kind=name to read every label as a class name "
                f"({excerpt(text)} too)"
            )
        code = first_of(False)
        text, (at, where) = self.texts[code], self.first[code]
        # A lone odd value on the first entry is what a header line ("filename label") looks like (comments may precede it).
        fix = f"it looks like a header line: {header_fix}" if at == 0 and names == 1 and ints else "fix the value"
        if kind == "int":
            return (
                f"{where}: label {excerpt(text)} is not an integer (labels.kind=int: ASCII digits with an "
                f"optional sign); {fix}, or set labels.kind=name to read the labels as class names"
            )
        return (
            f"{where}: label {excerpt(text)} is not an integer, but {_others(ints)} "
            f"(labels.kind=auto); {fix}, or set labels.kind=name to read every label as a class name"
        )

    def bounds(self, ids: list[int]) -> tuple[LabelBound, LabelBound]:
        """The lowest and highest id, each with the first entry that has it."""
        def pick(value: int) -> LabelBound:
            code = min((c for c in range(len(ids)) if ids[c] == value), key=lambda c: self.first[c][0])
            return LabelBound(value, self.texts[code], self.first[code][1])

        return pick(min(ids)), pick(max(ids))


def label_ids(
    entries: Sequence[LabelEntry], kind: str = "auto", header_fix: str = _HEADER_FIX
) -> tuple[list[int], list[str] | None]:
    """Label ids, and the class names (None when labels are integers), as `labels.kind` says.

    int: every label is an integer, kept as it is. name: every label is a class name ("3" too), ids by
    sorted name (the TFDS convention). auto: integers if every label is one, names if none is; a mix is an
    InputError naming the odd one out, because one stray value (a header line, a "1.0", a typo) must never
    renumber a whole dataset. `header_fix` says how to drop a header line for this source.
    """
    texts = LabelTexts()
    codes = [texts.add(entry.label, i, entry.where) for i, entry in enumerate(entries)]
    ids, class_names = texts.ids(kind, header_fix)
    return [ids[code] for code in codes], class_names


def _others(count: int) -> str:
    return "1 other label is" if count == 1 else f"{count} other labels are"


def read_items(source, labels, limit: int | None = None) -> Listing:
    """Every labelled image as a row of the item table; entries that name no usable file become Skips.

    The label file is streamed: per entry only its row of flat arrays is kept, so planning a million images
    takes tens of MB. Names are resolved against the folder listing a chunk at a time.
    """
    if limit is not None and limit < 1:
        raise InputError(f"limit={limit}: must be a positive number of images, or null for all")
    source.check()
    stream = labels.iter_entries(source)
    columns = dict(labels.columns)
    rows = _Rows(source, columns)
    texts = LabelTexts()
    entries = 0
    chunk: list[tuple[int, LabelEntry, int]] = []
    for entry in stream:
        # Ids come from every entry, so a `limit` smoke run numbers classes as the full run does.
        code = texts.add(entry.label, entries, entry.where)
        if limit is None or entries < limit:
            chunk.append((entries, entry, code))
            if len(chunk) >= _CHUNK:
                rows.add(chunk)
                chunk = []
        entries += 1
    rows.add(chunk)
    if not entries:
        raise InputError(f"{labels.path or source.describe()}: lists no images")
    ids, class_names = texts.ids(labels.kind, source.header_fix)
    bounds = texts.bounds(ids)
    items, skipped = rows.finish(ids, class_names)

    unlabelled: list[str] = []
    unlabelled_count = 0
    # Only a label file can leave images out; subdirs and embedded labels cover everything they list.
    if limit is None and labels.path and source.lists_files:
        unlabelled_count, unlabelled = rows.unlabelled(items)
    ignored = labels.ignored(source)
    if not len(items):
        reasons = sorted({s.reason for s in skipped})
        raise InputError(f"no usable images: every entry of the label file was skipped ({'; '.join(reasons)})")
    return Listing(items, class_names, skipped, unlabelled, ignored, bounds, rows.fields, unlabelled_count)


_CHUNK = 1 << 15  # label entries resolved at a time


class _Rows:
    """The item table being built from label entries: names resolved a chunk at a time, duplicates (one
    file named twice, also through a symlink or hard link) found at the end from 64-bit keys."""

    def __init__(self, source, columns: dict[str, str]) -> None:
        self.source = source
        self.columns = columns
        self.fields: dict[str, dict[str, tuple[str, str]]] = {column: {} for column in columns}
        self.names = StringsBuilder()
        self.wheres = _Wheres()
        self.codes = array("i")  # the label text's code (LabelTexts): a few distinct values
        self.keys = array("q")  # hash of each row's file (identity), for the duplicate check
        self.hashes = array("q")  # hash of each row's path, for the images no entry names
        self.entry_index = array("q")
        self.refs: array | None = None  # rows of sources that give refs (digits, pixel CSV): ints, or tuples of ints
        self.ref_width = 0
        self.extras: list = []  # each row's splitter columns, when a splitter reads some
        self.renamed: dict[int, str] = {}  # row -> the name as the label file wrote it, where that is not the path
        self.skips: list[tuple[int, Skip]] = []

    def add(self, chunk: list[tuple[int, LabelEntry, int]]) -> None:
        if not chunk:
            return
        if chunk[0][1].ref is not None:
            self._add_with_refs(chunk)
            return
        names = [entry.name for _, entry, _ in chunk]
        resolved = self.source.resolve_many(names)
        if resolved is names and not self.columns:  # every name is a file as written: the columns in one go
            self._append(names, [entry.where for _, entry, _ in chunk], [code for _, _, code in chunk], [index for index, _, _ in chunk])
            return
        refs, wheres, codes, indices = [], [], [], []
        for (index, entry, code), ref in zip(chunk, resolved):
            if isinstance(ref, EncodeError):
                self.skips.append((index, Skip(entry.name, str(ref), entry.where)))
                continue
            if ref != entry.name:
                self.renamed[len(self.codes) + len(refs)] = entry.name
            refs.append(ref)
            wheres.append(entry.where)
            codes.append(code)
            indices.append(index)
            if self.columns:
                self.extras.append(entry.extra)
                if entry.extra is not None:
                    for column, value in zip(self.columns, entry.extra):
                        self.fields[column].setdefault(ref, (value, entry.where))
        self._append(refs, wheres, codes, indices)

    def _append(self, refs: list[str], wheres: list[str], codes: list[int], indices: list[int]) -> None:
        self.names.extend(refs)
        self.wheres.extend(wheres)
        self.codes.extend(codes)
        self.entry_index.extend(indices)
        self.hashes.extend(map(hash, refs))
        keys = self.source.identities(refs)
        if keys is not refs or self.keys:  # the same keys as the paths' hashes (no linked file) are not kept twice
            if not self.keys:
                self.keys.extend(self.hashes[: len(self.hashes) - len(refs)])
            self.keys.extend(map(hash, keys))

    def _add_with_refs(self, chunk) -> None:
        for index, entry, code in chunk:
            ref = entry.ref
            if self.refs is None:
                self.ref_width = len(ref) if isinstance(ref, tuple) else 0
                self.refs = array("q")
            if self.ref_width:
                self.refs.extend(ref)
            else:
                self.refs.append(ref)
            self.names.append(entry.name)
            self.wheres.extend([entry.where])
            self.codes.append(code)
            self.entry_index.append(index)

    def finish(self, ids: list[int], class_names) -> tuple[ItemTable, list[Skip]]:
        """The table with label ids, later mentions of a file dropped (a Skip each), and the Skips in file order."""
        fits = -(2**63) <= min(ids) and max(ids) < 2**63
        lookup = np.array(ids, dtype=np.int64 if fits else object)  # an id beyond int64 is refused by the writer's check
        codes = np.frombuffer(self.codes, dtype=np.int32) if self.codes else np.zeros(0, dtype=np.int32)
        labels = lookup[codes] if len(codes) else np.zeros(0, dtype=lookup.dtype)
        refs = None
        if self.refs is not None:
            refs = np.frombuffer(self.refs, dtype=np.int64).copy()
            if self.ref_width:
                refs = refs.reshape(-1, self.ref_width)
        table = ItemTable(self.names.build(), labels, refs)
        drop = self._later_mentions(table) if refs is None else []
        self.row_hashes = np.frombuffer(self.hashes, dtype=np.int64) if self.hashes else np.zeros(0, dtype=np.int64)
        if drop:
            keep = np.ones(len(table), dtype=bool)
            keep[[row for row, _ in drop]] = False
            table = table.take(np.flatnonzero(keep))
            self.row_hashes = self.row_hashes[keep] if len(self.row_hashes) else self.row_hashes
            index = np.frombuffer(self.entry_index, dtype=np.int64)
            self.skips += [(int(index[row]), skip) for row, skip in drop]
        self.skips.sort(key=lambda pair: pair[0])
        return table, [skip for _, skip in self.skips]

    def _later_mentions(self, table: ItemTable) -> list[tuple[int, Skip]]:
        """(row, Skip) of every entry naming a file an earlier entry named; InputError where the two disagree."""
        keys = np.frombuffer(self.keys or self.hashes, dtype=np.int64) if self.keys or self.hashes else np.zeros(0, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        same = np.flatnonzero(ordered[1:] == ordered[:-1])
        if not len(same):
            return []
        candidates = sorted(set(order[same].tolist()) | set(order[same + 1].tolist()))
        first: dict[object, int] = {}
        drop = []
        for row in candidates:
            item = table[row]
            key = self.source.identity(item.ref)
            if key not in first:
                first[key] = row
                continue
            was = table[first[key]]
            name = self.renamed.get(row, item.name)
            where = self.wheres[row]
            at = f"first at {self.wheres[first[key]]}" + (f" as {was.ref}, the same file" if was.ref != item.ref else "")
            if was.label != item.label:
                raise InputError(f"{where}: {name} is listed again with another label ({at})")
            if self.columns and self.extras[row] is not None:
                for (column, setting), value, before in zip(self.columns.items(), self.extras[row], self.extras[first[key]]):
                    if before != value:
                        raise InputError(f"{where}: {name} is listed again with another {column!r} ({setting}): {value!r}, {at}")
            drop.append((row, Skip(name, f"listed twice ({at})", where)))
        return drop

    def unlabelled(self, items: ItemTable) -> tuple[int, list[str]]:
        """(count, the first 20 by name) of the image files of the folder that no entry names (also not as
        another name of the same file). With the folder's hashes at hand they are compared first, and the
        folder is walked again only if some image is left over."""
        source, identity = self.source, self.source.identity
        named = np.sort(self.row_hashes)
        ours = source.image_hashes()
        if ours is not None:
            left = set(ours[~sorted_contains(named, ours)].tolist())
            if not left:
                return 0, []
        else:
            left = None
        linked: set | None = None  # the files (device, inode) of the labelled paths that share a file

        def labelled(key) -> bool:
            nonlocal linked
            if isinstance(key, str):
                at = int(named.searchsorted(hash(key)))
                return at < len(named) and int(named[at]) == hash(key)
            if linked is None:
                linked = {k for k in map(identity, (item.ref for item in items)) if not isinstance(k, str)}
            return key in linked

        count, examples = 0, []
        for name in source.image_files():
            if (hash(name) in left) if left is not None else not labelled(name):
                key = identity(name)
                if key != name and labelled(key):
                    continue  # labelled under another name of the same file
                count += 1
                if len(examples) < 20:
                    examples.append(name)
        return count, examples


class _Wheres:
    """Each row's "file:line", kept as the part after the label file's name (the line number)."""

    def __init__(self) -> None:
        self.prefix: str | None = None
        self.rest = StringsBuilder()
        self._built: Strings | None = None

    def extend(self, wheres: list[str]) -> None:
        if not wheres:
            return
        if self.prefix is None:
            where = wheres[0]
            self.prefix = where[: max(where.rfind(":"), where.rfind("/"), where.rfind("[")) + 1]
        prefix, cut = self.prefix, len(self.prefix)
        self.rest.extend([where[cut:] if where.startswith(prefix) else "\0" + where for where in wheres])

    def __getitem__(self, row: int) -> str:
        if self._built is None:
            self._built = self.rest.build()
        rest = self._built[row]
        return rest[1:] if rest.startswith("\0") else self.prefix + rest
