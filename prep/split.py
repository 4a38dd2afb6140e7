"""Splitters: assign every item of the table to a named split (train / validation / test)."""

from __future__ import annotations

from prep.errors import ConfigError
from prep.stages import Item

SPLIT_NAMES = ("train", "validation", "test")


class NoSplit:
    """All items in one split, in label-file order (seed 002 writes the ImageNet validation set in val.txt order)."""

    def __init__(self, name: str = "train") -> None:
        if not name or "/" in name:
            raise ConfigError(f"split.name={name!r}: must be a plain name such as train or validation")
        self.name = name

    def assign(self, items: list[Item]) -> dict[str, list[Item]]:
        return {self.name: list(items)}
