"""split=none: every record in one split."""

from __future__ import annotations

from prep.core.errors import ConfigError
from prep.core.values import Item
from prep.split.base import Splitter, rank


class NoSplit(Splitter):
    """All items in one split, in label-file order (seed 002 writes ImageNet val in val.txt order)."""

    def __init__(self, name: str = "train", shuffle: bool = False, seed: int = 0, dedup: str = "none", dedup_keep: str = "all", near_distance: int = 5) -> None:
        super().__init__()
        if not name or "/" in name:
            raise ConfigError(f"split.name={name!r}: must be a plain name such as train or validation")
        self.set_dedup(dedup, dedup_keep, near_distance)
        self.name = name
        self.shuffle = shuffle
        self.seed = seed

    def assign(self, items: list[Item], units=None, *, fields=None, class_names=None) -> dict[str, list[Item]]:
        return {self.name: rank(items, self.seed, "order") if self.shuffle else items}
