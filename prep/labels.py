"""Label formats: read a label file (or the folder layout) into LabelEntry rows, in file order."""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Iterator

from prep import storage
from prep.errors import ConfigError, InputError
from prep.sources import LabelEntry, clean, is_image_name, read_lines

# What `labels.kind` accepts: how label values become ids (prep.reader.label_ids applies it).
KINDS = ("auto", "int", "name")


def check_kind(kind) -> str:
    """labels.kind as a plain string; an Enum member (matched by name, as OmegaConf does) works too."""
    value = getattr(kind, "name", kind)
    if value not in KINDS:
        raise ConfigError(
            f"labels.kind={kind!r}: choose auto (integers if every label is one, class names if none is), "
            "int (every label an integer) or name (every label a class name, ids by sorted name)"
        )
    return value


def excerpt(text: str, size: int = 80) -> str:
    """repr of a value for a message, shortened: a broken file can put a megabyte on one line."""
    if len(text) <= size:
        return repr(text)
    return f"{text[: size // 2]!r}... ({len(text)} characters)"


def _check_label_file(path: str) -> None:
    """The path is a regular file: a folder is a mistake, and opening a FIFO would wait forever for a writer."""
    if not path:
        raise InputError("labels.path is not set: give the label file, e.g. labels.path=/data/val.txt")
    if storage.is_url(path):
        if storage.isdir(path):
            raise InputError(f"labels.path={path}: is a folder, expected a label file")
        if not storage.isfile(path):
            raise InputError(f"labels.path={path}: no such file")
        return
    try:
        mode = os.stat(storage.local(path)).st_mode
    except FileNotFoundError:
        raise InputError(f"labels.path={path}: no such file") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL in the path
        raise InputError(f"labels.path={path!r}: cannot read: {getattr(err, 'strerror', None) or err}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"labels.path={path}: is a folder, expected a label file")
    if not stat.S_ISREG(mode):
        raise InputError(f"labels.path={path}: not a regular file (a FIFO, socket or device), expected a label file")


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, text without its line break) for every line.

    CRLF, CR, byte-order marks and a missing final newline are fine. Lines are read and decoded one at a
    time, so a problem (not UTF-8, a NUL byte, a line of a gigabyte) is named with its exact line.
    """
    _check_label_file(path)
    try:
        with storage.open_read(path) as f:
            for number, raw in read_lines(f, path, universal=True):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise InputError(
                        f"{path}:{number}: not UTF-8 text ({err.reason} at byte {err.start} of the line); save the file as UTF-8"
                    ) from None
                yield number, text.rstrip("\r\n").replace("\ufeff", "")
    except OSError as err:
        raise InputError(f"labels.path={path}: cannot read: {err.strerror or err}") from None


class _JsonInt:
    """An integer as a JSON line writes it: its digits are kept, so any size parses and nothing is rounded."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _DuplicateKey(Exception):
    """A JSON object naming a key twice: json.loads would silently keep the last value."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    row = dict(pairs)
    if len(row) != len(pairs):
        raise _DuplicateKey(next(key for i, (key, _) in enumerate(pairs) if key in dict(pairs[:i])))
    return row


_JSON_TYPES = {bool: "true/false", float: "a number with a fraction or exponent", type(None): "null", list: "a list", dict: "an object"}


def _label_text(value: object, where: str, line: str) -> str:
    """The label as text: a JSON integer's digits, or a string cleaned of invisible ends; anything else is an error."""
    if isinstance(value, _JsonInt):
        return value.text
    if isinstance(value, str):
        text = clean(value)
        if text and not _has_surrogate(text):
            return text
        if text:
            raise InputError(f"{where}: the label {excerpt(text)} is not valid Unicode (a lone surrogate), got {excerpt(line)}")
    kind = next((name for t, name in _JSON_TYPES.items() if isinstance(value, t)), None)
    detail = f" ({kind})" if kind and not isinstance(value, str) else ""
    raise InputError(f"{where}: the label must be an integer or a class name, got {excerpt(line)}{detail}")


def _has_surrogate(text: str) -> bool:
    # Only JSON's \ud800-style escapes make them; they cannot be written as UTF-8 into a record.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _field_text(row, key: str, setting: str, where: str, line: str) -> str:
    """A JSON line's field a splitter reads (a group, a split), as text."""
    if not isinstance(row, dict) or key not in row:
        raise InputError(f'{where}: no "{key}" field ({setting}): {excerpt(line)}')
    value = row[key]
    if isinstance(value, _JsonInt):
        return value.text
    if isinstance(value, str):
        return clean(value)
    raise InputError(f'{where}: the "{key}" field must be a string or an integer, got {excerpt(line)}')


class _Labels:
    """What every label format shares: entries() as a list (for tests and small files); the reader streams
    iter_entries(), so a million-line file is never held as a million objects."""

    def entries(self, source) -> list[LabelEntry]:
        return list(self.iter_entries(source))


class SpaceLabels(_Labels):
    """Caffe/ImageNet style: "filename label" per line, separated by spaces or tabs; blank lines and # comments skipped."""

    def __init__(self, path: str, kind: str = "auto") -> None:
        self.path = path
        self.kind = check_kind(kind)

    def iter_entries(self, source) -> Iterator[LabelEntry]:
        path = self.path
        for number, line in _lines(path):
            parts = line.split()
            if len(parts) == 2 and parts[1].isascii() and parts[1].isalnum() and parts[0][0] != "#":  # "name 3", "name n01440764"
                yield LabelEntry(parts[0], parts[1], f"{path}:{number}")
                continue
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            where = f"{path}:{number}"
            if len(parts) != 2:
                raise InputError(f'{where}: expected "filename label", got {excerpt(line)}')
            yield LabelEntry(parts[0], _label_text(parts[1], where, line), where)


class JsonlLabels(_Labels):
    """JSON lines: {"name.png": 3} (one pair per line, OneFlow style) or {"file_name": "name.png", "label": 3}."""

    has_columns = True

    def __init__(self, path: str, filename_key: str = "file_name", label_key: str = "label", kind: str = "auto") -> None:
        self.path = path
        self.filename_key = filename_key
        self.label_key = label_key
        self.kind = check_kind(kind)
        self.columns: dict[str, str] = {}  # fields a splitter reads -> the setting naming them (split.group_by, split.column)

    def iter_entries(self, source) -> Iterator[LabelEntry]:
        for number, line in _lines(self.path):
            if not line.strip():
                continue
            where = f"{self.path}:{number}"
            try:
                row = json.loads(line, parse_int=_JsonInt, object_pairs_hook=_unique_keys)
            except _DuplicateKey as err:
                raise InputError(f"{where}: names {str(err)!r} twice; which value is meant? {excerpt(line)}") from None
            except json.JSONDecodeError as err:
                raise InputError(f"{where}: not JSON ({err.msg} at column {err.colno}): {excerpt(line)}") from None
            except RecursionError:
                raise InputError(f"{where}: not a label line (JSON nested too deeply): {excerpt(line)}") from None
            if isinstance(row, dict) and self.filename_key in row:
                if self.label_key not in row:
                    raise InputError(f'{where}: has "{self.filename_key}" but no "{self.label_key}": {excerpt(line)}')
                name, label = row[self.filename_key], row[self.label_key]
            elif isinstance(row, dict) and len(row) == 1:
                ((name, label),) = row.items()
            else:
                raise InputError(
                    f'{where}: expected {{"filename": label}} or {{"{self.filename_key}": ..., "{self.label_key}": ...}}, got {excerpt(line)}'
                )
            if not isinstance(name, str) or not name.strip() or _has_surrogate(name):
                raise InputError(f"{where}: the filename must be a non-empty string, got {excerpt(line)}")
            extra = tuple(_field_text(row, key, setting, where, line) for key, setting in self.columns.items()) if self.columns else None
            yield LabelEntry(name.replace("\ufeff", ""), _label_text(label, where, line), where, None, extra)


class CsvLabels(_Labels):
    """CSV with a header row; `filename_column` and `label_column` name the columns to use."""

    has_columns = True

    def __init__(self, path: str, filename_column: str = "filename", label_column: str = "label", kind: str = "auto") -> None:
        self.path = path
        self.filename_column = filename_column
        self.label_column = label_column
        self.kind = check_kind(kind)
        self.columns: dict[str, str] = {}  # columns a splitter reads -> the setting naming them (split.group_by, split.column)

    def iter_entries(self, source) -> Iterator[LabelEntry]:
        numbers: list[int] = []  # the file lines of the row being read (the csv reader reads no further)

        def texts():
            for number, line in _lines(self.path):
                numbers.append(number)
                yield line + "\n"  # the csv reader keeps a line break inside a quoted field only if it sees one

        reader = csv.reader(texts())
        header: list[str] | None = None
        first = 0
        try:
            while True:
                numbers.clear()  # a quoted field can span lines: a row is named by the line it starts on
                row = next(reader, None)
                if row is None:
                    break
                if not row or not any(cell.strip() for cell in row):
                    continue
                if header is None:
                    header = [clean(cell) for cell in row]
                    name_at, label_at = self._columns(header, numbers[first])
                    extra_at = [self._column(header, numbers[first], self.columns[column], column) for column in self.columns]
                    continue
                where = f"{self.path}:{numbers[first]}"
                if len(row) != len(header):
                    raise InputError(f"{where}: expected {len(header)} columns as in the header, got {len(row)}: {excerpt(','.join(row))}")
                name, label = row[name_at].strip(), row[label_at]
                if not name:
                    raise InputError(f"{where}: empty {self.filename_column!r}: {excerpt(','.join(row))}")
                extra = tuple(clean(row[at]) for at in extra_at) if extra_at else None
                yield LabelEntry(name, _label_text(label, where, ",".join(row)), where, None, extra)
        except csv.Error as err:
            line = numbers[first] if first < len(numbers) else "?"
            raise InputError(f"{self.path}:{line}: not CSV as expected: {err}") from None
        if header is None:
            raise InputError(f"labels.path={self.path}: empty file, expected a header row")

    def _columns(self, header: list[str], number: int) -> tuple[int, int]:
        return (
            self._column(header, number, "labels.filename_column", self.filename_column),
            self._column(header, number, "labels.label_column", self.label_column),
        )

    def _column(self, header: list[str], number: int, key: str, column: str) -> int:
        if column not in header:
            raise InputError(f"{self.path}:{number}: no column {key}={column!r}; the header has {header}")
        if header.count(column) > 1:
            raise InputError(f"{self.path}:{number}: the header has {header.count(column)} columns named {column!r} ({key}); rename all but one")
        return header.index(column)


class SubdirLabels(_Labels):
    """The class of an image is the top-level folder it is in (ImageNet train / Keras layout); no label file."""

    def __init__(self, kind: str = "auto") -> None:
        self.kind = check_kind(kind)
        self.level = 0  # 1 with split=folders: DIR/<split>/<class>/<image>

    def _files(self, source) -> Iterator[tuple[str, bool]]:
        """(file, converted) for every file of the folder, sorted: unknown extensions and hidden files or
        folders are left out. Hidden means any part of the path starts with a dot: .DS_Store, macOS's
        ._name.jpg copies and Jupyter's .ipynb_checkpoints/ are never images of the class they sit in."""
        if not hasattr(source, "image_files"):
            raise InputError(f"labels=subdirs reads class folders, but {source.describe()} has none: use source=image_dir")
        for name in source.files():
            yield name, is_image_name(name)

    def ignored(self, source) -> list[str]:
        """Files in the folder that are not converted, as relative paths: they are counted, not silently lost.
        Symlinks leading outside, broken ones, FIFOs, aliased class folders: named with the reason."""
        left = [name for name, used in self._files(source) if not used]
        unusable = getattr(source, "unusable", dict)()
        return left + [f"{name} ({reason})" for name, reason in sorted(unusable.items())]

    def iter_entries(self, source) -> Iterator[LabelEntry]:
        found = False
        where = source.describe()
        for name, used in self._files(source):
            if not used:
                continue
            parts = name.split("/")
            if len(parts) < self.level + 2:
                at = "at the top" if len(parts) == 1 else f"directly in {parts[0]}/"
                layout = "DIR/<split>/<class>/<image> (split=folders)" if self.level else "DIR/<class>/<image>"
                raise InputError(f"{where}/{name}: labels=subdirs needs every image inside a class folder, {layout}; this one is {at}")
            found = True
            yield LabelEntry(name, parts[self.level], f"{where}/{name}")
        if not found:
            raise InputError(f"source.image_dir={where}: no images in class folders")


class EmbeddedLabels(_Labels):
    """Labels that come with the source itself (digits, pixel CSV rows)."""

    def __init__(self, kind: str = "auto") -> None:
        self.kind = check_kind(kind)

    def iter_entries(self, source) -> Iterator[LabelEntry]:
        if not hasattr(source, "labelled_entries"):
            raise InputError(f"labels=embedded needs a source with labels of its own (digits, pixel_csv), not {source.describe()}")
        return source.labelled_entries()
