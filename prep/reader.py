"""The reader stage: joins a source with its labels into the item table, in label-file order."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from prep.errors import EncodeError, InputError
from prep.labels import check_kind, excerpt
from prep.sources import LabelEntry
from prep.stages import Item, Skip

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
    items: list[Item]
    class_names: list[str] | None  # class id -> name when labels are names; None for integer labels
    skipped: list[Skip] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)  # images on disk that no label names
    ignored: list[str] = field(default_factory=list)  # files in image_dir not converted (unknown extension, hidden)
    label_bounds: tuple[LabelBound, LabelBound] | None = None  # (lowest, highest) label id of every entry
    # label-file columns a splitter asked for: column -> {item name: (value, "file:line")}
    fields: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)

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


def label_ids(
    entries: Sequence[LabelEntry], kind: str = "auto", header_fix: str = _HEADER_FIX
) -> tuple[list[int], list[str] | None]:
    """Label ids, and the class names (None when labels are integers), as `labels.kind` says.

    int: every label is an integer, kept as it is. name: every label is a class name ("3" too), ids by
    sorted name (the TFDS convention). auto: integers if every label is one, names if none is; a mix is an
    InputError naming the odd one out, because one stray value (a header line, a "1.0", a typo) must never
    renumber a whole dataset. `header_fix` says how to drop a header line for this source.
    """
    kind = check_kind(kind)
    is_int = [_INTEGER.fullmatch(entry.label) is not None for entry in entries]
    ints = sum(is_int)
    names = len(is_int) - ints
    if kind == "auto" and entries and ints == 0 and all(_DECIMAL.fullmatch(entry.label) for entry in entries):
        entry = entries[0]
        raise InputError(
            f"{entry.where}: every label is a number but not an integer (e.g. {excerpt(entry.label)}, as pandas writes "
            "integer columns with a gap); write them as integers, or set labels.kind=name to use them as class names "
            "(ids by sorted text: '10.0' before '2.0')"
        )
    if kind == "name" or (kind == "auto" and ints == 0):
        # One class, however its name was typed: NFC and NFD spellings of "café" are the same name.
        texts = [unicodedata.normalize("NFC", entry.label) for entry in entries]
        sorted_names = sorted(set(texts))
        index = {name: i for i, name in enumerate(sorted_names)}
        return [index[text] for text in texts], sorted_names
    if names:
        raise InputError(_kind_mismatch(entries, is_int, kind, header_fix))
    return [int(entry.label) if len(entry.label) <= 600 else parse_int(entry.label) for entry in entries], None


def _kind_mismatch(entries: Sequence[LabelEntry], is_int: list[bool], kind: str, header_fix: str) -> str:
    """The message for labels of both kinds: the minority kind's first example, and what to set."""
    ints = sum(is_int)
    names = len(is_int) - ints
    if kind == "auto" and ints < names:
        at = is_int.index(True)
        entry = entries[at]
        return (
            f"{entry.where}: label {excerpt(entry.label)} is an integer, but {_others(names)} class names "
            f"(labels.kind=auto); fix the value, or set labels.kind=name to read every label as a class name "
            f"({excerpt(entry.label)} too)"
        )
    at = is_int.index(False)
    entry = entries[at]
    # A lone odd value on the first entry is what a header line ("filename label") looks like (comments may precede it).
    fix = f"it looks like a header line: {header_fix}" if at == 0 and names == 1 and ints else "fix the value"
    if kind == "int":
        return (
            f"{entry.where}: label {excerpt(entry.label)} is not an integer (labels.kind=int: ASCII digits with an "
            f"optional sign); {fix}, or set labels.kind=name to read the labels as class names"
        )
    return (
        f"{entry.where}: label {excerpt(entry.label)} is not an integer, but {_others(ints)} "
        f"(labels.kind=auto); {fix}, or set labels.kind=name to read every label as a class name"
    )


def _others(count: int) -> str:
    return "1 other label is" if count == 1 else f"{count} other labels are"


def read_items(source, labels, limit: int | None = None) -> Listing:
    """Every labelled image as an Item; entries that name no usable file become Skips with the reason."""
    if limit is not None and limit < 1:
        raise InputError(f"limit={limit}: must be a positive number of images, or null for all")
    source.check()
    entries = labels.entries(source)
    if not entries:
        raise InputError(f"{getattr(labels, 'path', source.describe())}: lists no images")
    # Ids come from every entry, so a `limit` smoke run numbers classes as the full run does.
    kind = getattr(labels, "kind", "auto")
    ids, class_names = label_ids(entries, kind, getattr(source, "header_fix", _HEADER_FIX))
    low = min(range(len(ids)), key=ids.__getitem__)
    high = max(range(len(ids)), key=ids.__getitem__)
    bounds = tuple(LabelBound(ids[i], entries[i].label, entries[i].where) for i in (low, high))
    if limit is not None:
        entries, ids = entries[:limit], ids[:limit]

    # One file can be reached by two names (a symlink, "a/../b"): a source that can tell (identity)
    # keys the duplicate check by the file itself, so it cannot end up in the output twice.
    identity = getattr(source, "identity", None)
    items: list[Item] = []
    skipped: list[Skip] = []
    refs: set = set()
    columns = dict(getattr(labels, "columns", None) or {})
    fields: dict[str, dict[str, tuple[str, str]]] = {column: {} for column in columns}
    seen: dict[object, tuple[int, str, object]] = {}  # file -> (label, where, ref) of its first entry
    for entry, label in zip(entries, ids):
        if entry.ref is not None:
            items.append(Item(entry.name, label, entry.ref))
            continue
        try:
            ref = source.resolve(entry.name)
            key = identity(ref) if identity is not None else ref
        except EncodeError as err:
            skipped.append(Skip(entry.name, str(err), entry.where))
            continue
        if key in seen:
            first_label, first_where, first_ref = seen[key]
            first = f"first at {first_where}" + (f" as {first_ref}, the same file" if first_ref != ref else "")
            if first_label != label:
                raise InputError(f"{entry.where}: {entry.name} is listed again with another label ({first})")
            if entry.extra is not None:
                for (column, setting), value in zip(columns.items(), entry.extra):
                    if fields[column][first_ref][0] != value:
                        raise InputError(f"{entry.where}: {entry.name} is listed again with another {column!r} ({setting}): {value!r}, {first}")
            skipped.append(Skip(entry.name, f"listed twice ({first})", entry.where))
            continue
        seen[key] = (label, entry.where, ref)
        refs.add(ref)
        items.append(Item(ref, label, ref))
        if entry.extra is not None:
            for column, value in zip(columns, entry.extra):
                fields[column][ref] = (value, entry.where)

    unlabelled: list[str] = []
    # Only a label file can leave images out; subdirs and embedded labels cover everything they list.
    if limit is None and getattr(labels, "path", None) and hasattr(source, "image_files"):
        unlabelled = [name for name in source.image_files() if name not in refs and not _seen_as(identity, name, seen)]
    ignored = labels.ignored(source) if hasattr(labels, "ignored") else []
    if not items:
        reasons = sorted({s.reason for s in skipped})
        raise InputError(f"no usable images: every entry of the label file was skipped ({'; '.join(reasons)})")
    return Listing(items, class_names, skipped, unlabelled, ignored, bounds, fields)


def _seen_as(identity, name: str, seen: dict) -> bool:
    """Whether an image file was labelled under another name."""
    if identity is None:
        return False
    try:
        return identity(name) in seen
    except EncodeError:
        return False
