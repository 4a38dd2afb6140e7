"""What split=folders and split=column share: splits the data already has.

One class map for all splits (ids never depend on which split a class appears in); a class missing from a
split is a warning naming it, an error with split.strict=true.
"""

from __future__ import annotations

from prep.core.errors import InputError
from prep.core.values import Item
from prep.split.base import SPLIT_NAMES, Splitter, balance, class_text, gather, missing_classes, rank

ACCEPTED = "train, validation (or val, valid), test"


class PredefinedSplit(Splitter):
    predefined = True

    def __init__(self, strict: bool, shuffle: bool, seed: int, dedup: str, dedup_keep: str, near_distance: int) -> None:
        super().__init__()
        self.set_dedup(dedup, dedup_keep, near_distance)
        self.strict = strict
        self.shuffle = shuffle
        self.seed = seed

    def split_of(self, item: Item, fields: dict) -> str:
        raise NotImplementedError

    def assign(self, items: list[Item], units=None, *, fields=None, class_names=None) -> dict[str, list[Item]]:
        self.notes, self.note_kinds = [], []
        where: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
        for index, item in enumerate(items):
            where[self.split_of(item, fields or {})].append(index)
        splits = {name: gather(items, indices) for name, indices in where.items() if indices}
        for split, labels in missing_classes(splits, class_names).items():
            shown = ", ".join(class_text(label, class_names) for label in labels[:10]) + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")
            text = f"{split} has no image of {len(labels)} class(es) the other splits have: {shown}"
            if self.strict:
                raise InputError(f"{text} (split.strict=true); add them, or set split.strict=false to convert anyway")
            self.note(text + " (their ids stay the same in every split)")
        if self.shuffle:
            splits = {name: rank(members, self.seed, f"order:{name}") for name, members in splits.items()}
        self.balance = balance(splits, {})
        return splits
