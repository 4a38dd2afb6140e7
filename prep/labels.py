"""Label formats: read a label file (or the folder layout) into LabelEntry rows, in file order."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator

from prep import storage
from prep.errors import InputError
from prep.sources import LabelEntry


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, text) for every line; CRLF, a UTF-8 byte-order mark and a missing final newline are fine."""
    if not path:
        raise InputError("labels.path is not set: give the label file, e.g. labels.path=/data/val.txt")
    try:
        with storage.open_text(path) as f:
            yield from enumerate((line.rstrip("\r\n") for line in f), start=1)
    except FileNotFoundError:
        raise InputError(f"labels.path={path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"labels.path={path}: is a folder, expected a label file") from None
    except UnicodeDecodeError as err:
        raise InputError(f"labels.path={path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise InputError(f"labels.path={path}: cannot read: {err.strerror}") from None


def _label_text(value: object, where: str, line: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{where}: the label must be an integer or a class name, got {line!r}")
    return str(value).strip()


class SpaceLabels:
    """Caffe/ImageNet style: "filename label" per line, separated by spaces or tabs; blank lines and # comments skipped."""

    def __init__(self, path: str) -> None:
        self.path = path

    def entries(self, source) -> list[LabelEntry]:
        out = []
        for number, line in _lines(self.path):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split()
            where = f"{self.path}:{number}"
            if len(parts) != 2:
                raise InputError(f'{where}: expected "filename label", got {line!r}')
            out.append(LabelEntry(parts[0], parts[1], where))
        return out


class JsonlLabels:
    """JSON lines: {"name.png": 3} (one pair per line, OneFlow style) or {"file_name": "name.png", "label": 3}."""

    def __init__(self, path: str, filename_key: str = "file_name", label_key: str = "label") -> None:
        self.path = path
        self.filename_key = filename_key
        self.label_key = label_key

    def entries(self, source) -> list[LabelEntry]:
        out = []
        for number, line in _lines(self.path):
            if not line.strip():
                continue
            where = f"{self.path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{where}: not JSON ({err.msg} at column {err.colno}): {line!r}") from None
            if isinstance(row, dict) and self.filename_key in row:
                if self.label_key not in row:
                    raise InputError(f'{where}: has "{self.filename_key}" but no "{self.label_key}": {line!r}')
                name, label = row[self.filename_key], row[self.label_key]
            elif isinstance(row, dict) and len(row) == 1:
                ((name, label),) = row.items()
            else:
                raise InputError(
                    f'{where}: expected {{"filename": label}} or {{"{self.filename_key}": ..., "{self.label_key}": ...}}, got {line!r}'
                )
            if not isinstance(name, str) or not name.strip():
                raise InputError(f"{where}: the filename must be a non-empty string, got {line!r}")
            out.append(LabelEntry(name, _label_text(label, where, line), where))
        return out


class CsvLabels:
    """CSV with a header row; `filename_column` and `label_column` name the columns to use."""

    def __init__(self, path: str, filename_column: str = "filename", label_column: str = "label") -> None:
        self.path = path
        self.filename_column = filename_column
        self.label_column = label_column

    def entries(self, source) -> list[LabelEntry]:
        lines = _lines(self.path)
        numbered = ((n, line) for n, line in lines)
        line_numbers: list[int] = []

        def texts():
            for n, line in numbered:
                line_numbers.append(n)
                yield line

        reader = csv.reader(texts())
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise InputError(f"labels.path={self.path}: empty file, expected a header row") from None
        columns = {}
        for key, column in (("filename_column", self.filename_column), ("label_column", self.label_column)):
            if column not in header:
                raise InputError(f"{self.path}:{line_numbers[0]}: no column labels.{key}={column!r}; the header has {header}")
            columns[key] = header.index(column)
        name_at, label_at = columns["filename_column"], columns["label_column"]
        out = []
        try:
            for row in reader:
                number = line_numbers[-1]
                if not row or not any(cell.strip() for cell in row):
                    continue
                where = f"{self.path}:{number}"
                if len(row) != len(header):
                    raise InputError(f"{where}: expected {len(header)} columns as in the header, got {len(row)}: {','.join(row)!r}")
                name, label = row[name_at].strip(), row[label_at]
                if not name:
                    raise InputError(f"{where}: empty {self.filename_column!r}: {','.join(row)!r}")
                out.append(LabelEntry(name, _label_text(label, where, ",".join(row)), where))
        except csv.Error as err:
            raise InputError(f"{self.path}:{line_numbers[-1]}: {err}") from None
        return out


class SubdirLabels:
    """The class of an image is the top-level folder it is in (ImageNet train / Keras layout); no label file."""

    def entries(self, source) -> list[LabelEntry]:
        files = source.image_files()
        out = []
        for name in files:
            parent = name.split("/", 1)[0] if "/" in name else ""
            if not parent:
                raise InputError(
                    f"{source.describe()}/{name}: labels=subdirs needs every image inside a class folder, this one is at the top"
                )
            out.append(LabelEntry(name, parent, f"{source.describe()}/{name}"))
        if not out:
            raise InputError(f"source.image_dir={source.describe()}: no images in class folders")
        return out


class EmbeddedLabels:
    """Labels that come with the source itself (digits, pixel CSV rows)."""

    def entries(self, source) -> list[LabelEntry]:
        return source.labelled_entries()
