"""split=folders: DIR/<split>/<class>/<image>, the split given by the first folder."""

from __future__ import annotations

from prep.core.errors import ConfigError, InputError
from prep.core.values import Item
from prep.split.base import canonical_split
from prep.split.predefined import ACCEPTED, PredefinedSplit


class FolderSplit(PredefinedSplit):
    """DIR/<split>/<class>/<image>: the first folder names the split (train, validation/val/valid, test)."""

    def __init__(self, strict: bool = False, shuffle: bool = True, seed: int = 0, dedup: str = "exact", dedup_keep: str = "all", near_distance: int = 5) -> None:
        super().__init__(strict, shuffle, seed, dedup, dedup_keep, near_distance)

    def prepare(self, labels) -> None:
        from prep.labels.embedded import EmbeddedLabels
        from prep.labels.subdirs import SubdirLabels

        if isinstance(labels, SubdirLabels):
            labels.level = 1  # the class is the folder inside the split folder
        elif isinstance(labels, EmbeddedLabels):
            raise ConfigError("split=folders reads the split from DIR/<split>/...: use source=image_dir with labels=subdirs or a label file")

    def split_of(self, item: Item, fields: dict) -> str:
        top = item.name.split("/", 1)[0] if "/" in item.name else ""
        split = canonical_split(top) if top else None
        if split is None:
            where = f"the folder {top!r}" if top else "the top of source.image_dir"
            raise InputError(f"{item.name}: split=folders expects DIR/<split>/<class>/<image>, this image is in {where}; the split folders are {ACCEPTED}")
        return split


