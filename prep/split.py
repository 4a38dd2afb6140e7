"""Splitters: assign every item of the table to a named split (train / validation / test), reproducibly."""

from __future__ import annotations

import hashlib
import logging
import math
from collections import defaultdict

from prep.errors import ConfigError
from prep.stages import Item

log = logging.getLogger(__name__)
SPLIT_NAMES = ("train", "validation", "test")


def rank(items: list[Item], seed: int, salt: str) -> list[Item]:
    """Items ordered by a salted hash of their names: a seeded shuffle that does not depend on the order
    the files were listed in (TFDS shuffles by hashed keys for the same reason)."""
    prefix = f"{seed}\0{salt}\0".encode()

    def key(item: Item) -> tuple[bytes, str]:
        return hashlib.blake2b(prefix + item.name.encode(), digest_size=8).digest(), item.name

    return sorted(items, key=key)


class NoSplit:
    """All items in one split, in label-file order (seed 002 writes ImageNet val in val.txt order)."""

    def __init__(self, name: str = "train", shuffle: bool = False, seed: int = 0) -> None:
        if not name or "/" in name:
            raise ConfigError(f"split.name={name!r}: must be a plain name such as train or validation")
        self.name = name
        self.shuffle = shuffle
        self.seed = seed
        self.notes: list[str] = []

    def assign(self, items: list[Item]) -> dict[str, list[Item]]:
        return {self.name: rank(items, self.seed, "order") if self.shuffle else list(items)}


def _split_counts(size: int, val: float, test: float) -> tuple[int, int]:
    """Per-class validation and test counts, each within half an image of fraction x size where possible,
    and never leaving train empty: if rounding took every image, the count rounded up the most gives one back."""
    targets = [val * size, test * size]
    counts = [math.floor(t + 0.5) for t in targets]
    if size and sum(counts) >= size:
        worst = max((0, 1), key=lambda i: counts[i] - targets[i])
        counts[worst] -= 1
    return counts[0], counts[1]


class StratifiedSplit:
    """train / validation / test with every class split in the same proportions, stable for a given seed.

    In every class, validation and test get round(fraction x class size) images (at least one image stays
    in train). A class too small for that to give it a place in every split keeps what the rounding gives
    it, and the run says so in its log and in summary.json's `split_notes`.
    """

    def __init__(self, val: float = 0.1, test: float = 0.1, seed: int = 0, shuffle: bool = True) -> None:
        for key, value in (("val", val), ("test", test)):
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError(f"split.{key}={value}: must be a fraction in [0, 1)")
        if val + test >= 1:
            raise ConfigError(f"split.val={val} and split.test={test} add up to {val + test:g}: they must leave some images for train (< 1)")
        self.val = val
        self.test = test
        self.seed = seed
        self.shuffle = shuffle
        self.notes: list[str] = []

    def assign(self, items: list[Item]) -> dict[str, list[Item]]:
        by_class: dict[int, list[Item]] = defaultdict(list)
        for item in items:
            by_class[item.label].append(item)
        chosen: dict[str, str] = {}  # item name -> split
        self.notes = []
        for label in sorted(by_class):
            members = rank(by_class[label], self.seed, f"split:{label}")
            n_val, n_test = _split_counts(len(members), self.val, self.test)
            for i, item in enumerate(members):
                chosen[item.name] = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
            missing = [name for name, n, f in (("validation", n_val, self.val), ("test", n_test, self.test)) if f > 0 and n == 0]
            if missing:
                note = f"class {label} has {len(members)} image(s): too few for {' and '.join(missing)}, kept in train"
                self.notes.append(note)
                log.warning(note)
        splits: dict[str, list[Item]] = {name: [] for name in SPLIT_NAMES}
        for item in items:  # label-file order within each split unless shuffled
            splits[chosen[item.name]].append(item)
        if self.shuffle:
            # Seeded, so training readers do not see one class at a time, and the same on every run.
            splits = {name: rank(members, self.seed, f"order:{name}") for name, members in splits.items()}
        return {name: members for name, members in splits.items() if members or name == "train"}
