"""split=column: the split of every image from a column of a CSV label file (or a field of a JSONL one)."""

from __future__ import annotations

from prep.core.errors import ConfigError, InputError
from prep.core.values import Item
from prep.split.base import canonical_split
from prep.split.predefined import ACCEPTED, PredefinedSplit


class ColumnSplit(PredefinedSplit):
    """The split of every image from a column of a CSV label file (or a field of a JSONL one)."""

    def __init__(
        self, column: str = "split", strict: bool = False, shuffle: bool = True, seed: int = 0, dedup: str = "exact", dedup_keep: str = "all", near_distance: int = 5
    ) -> None:
        super().__init__(strict, shuffle, seed, dedup, dedup_keep, near_distance)
        if not column:
            raise ConfigError("split.column is empty: name the label-file column that holds each image's split")
        self.column = column
        self.columns = {column: "split.column"}

    def prepare(self, labels) -> None:
        if not labels.has_columns:
            raise ConfigError(f"split=column reads split.column={self.column!r} from the label file: use labels=csv or labels=jsonl")

    def split_of(self, item: Item, fields: dict) -> str:
        value, where = fields[self.column].get(item.name, ("", "?"))
        split = canonical_split(value)
        if split is None:
            raise InputError(f"{where}: split {value!r} in column {self.column!r} is not one of {ACCEPTED}")
        return split

