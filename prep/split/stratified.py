"""split=stratified: train / validation / test with every class in the same proportions, stable for a seed;
images of one group (a duplicate group, a split.group_by group) always share a split."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict

from prep.core.errors import ConfigError, InputError
from prep.core.table import ItemTable, label_counts
from prep.core.values import Item
from prep.split.base import SPLIT_NAMES, Splitter, balance, class_text, gather, rank, rank_indices

_ORDER = {"test": 0, "validation": 1, "train": 2}  # equal costs: the smaller split first


def split_counts(size: int, val: float, test: float) -> tuple[int, int]:
    """Per-class validation and test counts, each within half an image of fraction x size where possible,
    and never leaving train empty: if rounding took every image, the count rounded up the most gives one back."""
    targets = [val * size, test * size]
    counts = [math.floor(t + 0.5) for t in targets]
    if size and sum(counts) >= size:
        worst = max((0, 1), key=lambda i: counts[i] - targets[i])
        counts[worst] -= 1
    return counts[0], counts[1]


class StratifiedSplit(Splitter):
    """train / validation / test with every class split in the same proportions, stable for a given seed.

    In every class, validation and test get round(fraction x class size) images (at least one image stays
    in train). Groups (copies of one picture, or split.group_by) are placed first, whole, each where it
    brings the per-class counts closest to their targets (least added squared deviation, largest group
    first); single images then fill what every class still needs. A class too small (or whose groups are
    too large) for a place in every split keeps what it gets, and the run says so in split_notes.
    """

    scan = True  # bad files are found before splitting, so the proportions hold over what is written

    def __init__(
        self,
        val: float = 0.1,
        test: float = 0.1,
        seed: int = 0,
        shuffle: bool = True,
        dedup: str = "exact",
        dedup_keep: str = "all",
        near_distance: int = 5,
        group_by: str | None = None,
    ) -> None:
        super().__init__()
        for key, value in (("val", val), ("test", test)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError(f"split.{key}={value}: must be a fraction in [0, 1)")
        if val + test >= 1:
            raise ConfigError(f"split.val={val} and split.test={test} add up to {val + test:g}: they must leave some images for train (< 1)")
        self.set_dedup(dedup, dedup_keep, near_distance)
        self.val = val
        self.test = test
        self.seed = seed
        self.shuffle = shuffle
        self.group_by = group_by or None
        self._regex = None
        if self.group_by and "(" in self.group_by:
            try:
                self._regex = re.compile(self.group_by)
            except re.error as err:
                raise ConfigError(f"split.group_by={group_by!r}: not a regular expression ({err})") from None
            if self._regex.groups != 1:
                raise ConfigError(
                    f"split.group_by={group_by!r}: a regular expression needs exactly one capture group (it has {self._regex.groups}), "
                    "e.g. '^([^_]+)_' for patient42_001.png"
                )
        elif self.group_by:
            self.columns = {self.group_by: "split.group_by"}
        self.groups_info: dict = {}

    def prepare(self, labels) -> None:
        if self.columns and not labels.has_columns:
            raise ConfigError(
                f"split.group_by={self.group_by!r} names a label-file column, but this label format has no columns: use labels=csv or "
                "labels=jsonl with that column, or a regular expression with one capture group in parentheses on the image path, "
                "e.g. '^([^_]+)_'"
            )

    def group_of(self, item: Item, fields: dict) -> str | None:
        if self._regex is not None:
            match = self._regex.search(item.name)
            return match.group(1) if match and match.group(1) else None
        if self.columns:
            value = fields[self.group_by].get(item.name)
            return value[0] if value and value[0] else None
        return None

    def _group_units(self, items: list[Item], fields: dict | None) -> list[list[int]]:
        if not self.group_by:
            return []
        members: dict[str, list[int]] = defaultdict(list)
        unmatched = []
        for index, item in enumerate(items):
            key = self.group_of(item, fields or {})
            if key is None:
                unmatched.append(item.name)
            else:
                members[key].append(index)
        self.groups_info = {"by": self.group_by, "groups": len(members) + len(unmatched), "unmatched": len(unmatched)}
        if unmatched:
            how = "match no group of" if self._regex is not None else "have no value in the column"
            self.note(f"{len(unmatched)} image(s) {how} split.group_by={self.group_by!r}, each is a group of its own, e.g. {', '.join(unmatched[:3])}")
        if not members:
            raise InputError(f"split.group_by={self.group_by!r}: no image is in a group (e.g. {items[0].name}); check the expression or column")
        return [m for m in members.values() if len(m) > 1]

    def assign(self, items: list[Item], units=None, *, fields=None, class_names=None) -> dict[str, list[Item]]:
        from prep.core.unionfind import UnionFind

        self.notes, self.note_kinds = [], []
        units = [*(units or []), *self._group_units(items, fields)]
        groups = []
        if units:
            uf = UnionFind(len(items))
            for unit in units:
                for index in unit[1:]:
                    uf.union(unit[0], index)
            groups = uf.components()
        table = isinstance(items, ItemTable)
        labels = items.labels.tolist() if table else [item.label for item in items]
        item_names = items.names if table else [item.name for item in items]

        totals = Counter(label_counts(items))
        targets: dict[int, dict[str, int]] = {}
        for label, size in totals.items():
            n_val, n_test = split_counts(size, self.val, self.test)
            targets[label] = {"train": size - n_val - n_test, "validation": n_val, "test": n_test}
        names = [s for s in SPLIT_NAMES if s == "train" or (self.val if s == "validation" else self.test) > 0]
        placed = {s: Counter() for s in SPLIT_NAMES}
        chosen: dict[int, str] = {}

        def order(group: list[int]) -> tuple:
            # by size, then a seeded hash of the group's first name: not by listing order
            first = min(item_names[i] for i in group).encode()
            return (-len(group), hashlib.blake2b(f"{self.seed}\0group\0".encode() + first, digest_size=8).digest(), first)

        for group in sorted(groups, key=order):
            counts = Counter(labels[i] for i in group)

            def cost(split: str) -> tuple:
                # the change in the squared distance of every class's count from its target
                added = sum(n * (2 * (placed[split][k] - targets[k][split]) + n) for k, n in counts.items())
                return added, _ORDER[split]

            best = min(names, key=cost)
            placed[best].update(counts)
            for i in group:
                chosen[i] = best

        grouped = set(chosen)
        by_class: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            if index not in grouped:
                by_class[label].append(index)
        for label in sorted(totals):
            need_test = max(0, targets[label]["test"] - placed["test"][label])
            need_val = max(0, targets[label]["validation"] - placed["validation"][label])
            need_train = max(0, targets[label]["train"] - placed["train"][label])
            singles = len(by_class[label])
            if need_test + need_val + need_train > singles:
                # groups took more than their share somewhere: what is left is shared in proportion to the needs
                total = need_test + need_val + need_train
                need_test = math.floor(singles * need_test / total + 0.5)
                need_val = min(singles - need_test, math.floor(singles * need_val / total + 0.5))
            for i, index in enumerate(rank_indices(by_class[label], item_names, self.seed, f"split:{label}")):
                chosen[index] = "test" if i < need_test else "validation" if i < need_test + need_val else "train"

        where: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
        for index in range(len(labels)):  # label-file order within each split unless shuffled
            where[chosen[index]].append(index)
        del chosen
        splits = {name: gather(items, indices) for name, indices in where.items()}
        self._note_missing(splits, totals, {labels[i] for i in grouped}, class_names)
        if self.shuffle:
            # Seeded, so training readers do not see one class at a time, and the same on every run.
            splits = {name: rank(members, self.seed, f"order:{name}") for name, members in splits.items()}
        splits = {name: members for name, members in splits.items() if members or name == "train"}
        self.balance = balance(splits, {"train": round(1 - self.val - self.test, 6), "validation": self.val, "test": self.test})
        return splits

    def _note_missing(self, splits, totals, labels_in_groups, class_names) -> None:
        present = {s: set(label_counts(members)) for s, members in splits.items()}
        for label in sorted(totals):
            missing = [s for s, f in (("validation", self.val), ("test", self.test)) if f > 0 and label not in present[s]]
            if not missing:
                continue
            if label in labels_in_groups:
                self.note(f"class {class_text(label, class_names)} has {totals[label]} image(s) but none in {' and '.join(missing)}: its groups are too large or too few", kind="class missing from a split: groups")
            else:
                self.note(f"class {class_text(label, class_names)} has {totals[label]} image(s): too few for {' and '.join(missing)}, kept in train", kind="class too small for a split")
