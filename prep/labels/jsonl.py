"""JsonlLabels: one JSON object per line."""

from __future__ import annotations

import json
from collections.abc import Iterator

from prep.core.errors import InputError
from prep.labels.base import (
    DuplicateKey,
    JsonInt,
    LabelFormat,
    check_kind,
    excerpt,
    field_text,
    has_surrogate,
    label_lines,
    label_text,
    unique_keys,
)
from prep.sources.base import LabelEntry


class JsonlLabels(LabelFormat):
    """JSON lines: {"name.png": 3} (one pair per line, OneFlow style) or {"file_name": "name.png", "label": 3}."""

    has_columns = True

    def __init__(self, path: str, filename_key: str = "file_name", label_key: str = "label", kind: str = "auto") -> None:
        self.path = path
        self.filename_key = filename_key
        self.label_key = label_key
        self.kind = check_kind(kind)
        self.columns: dict[str, str] = {}  # fields a splitter reads -> the setting naming them (split.group_by, split.column)

    def iter_entries(self, source) -> Iterator[LabelEntry]:
        for number, line in label_lines(self.path):
            if not line.strip():
                continue
            where = f"{self.path}:{number}"
            try:
                row = json.loads(line, parse_int=JsonInt, object_pairs_hook=unique_keys)
            except DuplicateKey as err:
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
            if not isinstance(name, str) or not name.strip() or has_surrogate(name):
                raise InputError(f"{where}: the filename must be a non-empty string, got {excerpt(line)}")
            extra = tuple(field_text(row, key, setting, where, line) for key, setting in self.columns.items()) if self.columns else None
            yield LabelEntry(name.replace("\ufeff", ""), label_text(label, where, line), where, None, extra)
