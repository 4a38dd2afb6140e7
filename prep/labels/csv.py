"""CsvLabels: a CSV file with a header row naming the file and label columns."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from prep.core.errors import InputError
from prep.labels.base import LabelFormat, check_kind, excerpt, label_lines, label_text
from prep.sources.base import LabelEntry, clean


class CsvLabels(LabelFormat):
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
            for number, line in label_lines(self.path):
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
                yield LabelEntry(name, label_text(label, where, ",".join(row)), where, None, extra)
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
