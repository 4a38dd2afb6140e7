"""What every splitter shares: the seeded order, split names, and the balance report of an assignment."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict

from prep.core.errors import ConfigError
from prep.core.table import ItemTable, label_counts
from prep.core.values import Item

SPLIT_NAMES = ("train", "validation", "test")
# How predefined splits may be spelled (folder names, split column values), case-insensitively.
SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "valid": "validation", "test": "test"}
DEDUP = ("none", "exact", "near")
DEDUP_KEEP = ("all", "first")
MAX_NEAR_DISTANCE = 16


def rank(items, seed: int, salt: str):
    """Items ordered by a salted hash of their names: a seeded shuffle that does not depend on the order
    the files were listed in (TFDS shuffles by hashed keys for the same reason). A table stays a table."""
    prefix = f"{seed}\0{salt}\0".encode()

    def key(name: str) -> tuple[bytes, str]:
        return hashlib.blake2b(prefix + name.encode(), digest_size=8).digest(), name

    if isinstance(items, ItemTable):
        keys = [key(name) for name in items.names]
        return items.take(sorted(range(len(keys)), key=keys.__getitem__))
    return sorted(items, key=lambda item: key(item.name))


def rank_indices(indices: list[int], names, seed: int, salt: str) -> list[int]:
    """rank() of the items at `indices` (names: the items' names, indexable), as indices."""
    prefix = f"{seed}\0{salt}\0".encode()

    def key(index: int) -> tuple[bytes, str]:
        name = names[index]
        return hashlib.blake2b(prefix + name.encode(), digest_size=8).digest(), name

    return sorted(indices, key=key)


def gather(items, indices: list[int]):
    """The items at `indices`, in that order: a table stays a table, a list a list."""
    if isinstance(items, ItemTable):
        return items.take(indices)
    return [items[i] for i in indices]


def canonical_split(value: str) -> str | None:
    """train / validation / test for a folder name or a split column value (val, valid, VAL ...), else None."""
    return SPLIT_ALIASES.get(value.strip().lower())


class Splitter:
    """The common surface of the splitters: `assign`, plus what the pipeline reads off them.

    notes: warnings about the assignment (a class too small for a split, a class missing from a split),
    logged and listed in summary.json's split_notes. balance: the target and achieved fraction of every
    class in every split (summary.json's split_balance).
    """

    dedup = "none"
    dedup_keep = "all"
    near_distance = 5
    scan = False  # whether the content scan runs even without hashing (to know bad files before splitting)
    columns: dict[str, str] = {}  # label-file columns the splitter reads -> the setting that names them
    predefined = False  # whether the split of every image is given (keep=first then keeps evaluation copies)
    groups_info: dict = {}  # with split.group_by: summary.json's `groups` (the setting, how many groups, unmatched)

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.note_kinds: list[str] = []
        self.balance: dict = {}

    def set_dedup(self, dedup: str, dedup_keep: str, near_distance: int) -> None:
        """What the content scan looks for and what is kept: dedup none (no hashing), exact (byte-identical
        files) or near (also a 64-bit difference hash of the decoded thumbnail, grouping images within
        near_distance bits); dedup_keep all (every copy written, all in one split) or first (one copy)."""
        if dedup not in DEDUP:
            raise ConfigError(f"split.dedup={dedup!r}: choose none, exact (byte-identical files) or near (also resized or re-encoded copies)")
        if dedup_keep not in DEDUP_KEEP:
            raise ConfigError(f"split.dedup_keep={dedup_keep!r}: choose all (write every copy, in one split) or first (write one copy)")
        if isinstance(near_distance, bool) or not isinstance(near_distance, int) or not 0 <= near_distance <= MAX_NEAR_DISTANCE:
            raise ConfigError(
                f"split.near_distance={near_distance!r}: a number of differing bits of the 64-bit image hash, 0..{MAX_NEAR_DISTANCE} "
                "(beyond that, unrelated images match)"
            )
        self.dedup, self.dedup_keep, self.near_distance = dedup, dedup_keep, near_distance

    @property
    def scans(self) -> bool:
        """Whether the run reads every image before splitting (the content scan): to hash it for duplicates,
        or, with `scan`, only to know the bad files first."""
        return self.dedup != "none" or self.scan

    def note(self, text: str, kind: str = "") -> None:
        """A warning about the assignment, for the log, plan.json and summary.json's split_notes. Notes of one
        kind (one per class, say) are logged capped by the planning step: a few lines, then a count."""
        self.notes.append(text)
        self.note_kinds.append(kind or text)

    def prepare(self, labels) -> None:
        """Adjust or check the label stage before it is read (split=folders reads classes one level down)."""

    def split_of(self, item: Item, fields: dict) -> str:
        """The split a predefined splitter gives an image (its folder, its split column); InputError for an
        image it cannot place. Only called where `predefined` is true."""
        raise NotImplementedError

    def group_of(self, item: Item, fields: dict) -> str | None:
        """The group an image belongs to (images of one group share a split), or None."""
        return None

    def assign(self, items: list[Item], units: list[list[int]] | None = None, fields: dict | None = None) -> dict[str, list[Item]]:
        raise NotImplementedError


def balance(splits: dict[str, list[Item]], targets: dict[str, float]) -> dict:
    """{class: {split: {target, achieved, images}}}: the fraction of every class's images in every split
    (a split with a target but no image too, so a missed target shows)."""
    totals: Counter = Counter()
    counts: dict[str, Counter] = {}
    splits = {**{name: [] for name in SPLIT_NAMES if targets.get(name)}, **splits}
    for split, members in splits.items():
        counts[split] = Counter(label_counts(members))
        totals.update(counts[split])
    out: dict = defaultdict(dict)
    for label in sorted(totals):
        for split in splits:
            n = counts[split][label]
            entry = {"images": n, "achieved": round(n / totals[label], 4)}
            if split in targets:
                entry["target"] = targets[split]
            out[str(label)][split] = entry
    return dict(out)


def missing_classes(splits: dict[str, list[Item]], class_names: list[str] | None) -> dict[str, list[int]]:
    """split -> the classes (ids) that have images in some split but none in this one."""
    present = {split: set(label_counts(members)) for split, members in splits.items()}
    every = set().union(*present.values()) if present else set()
    return {split: sorted(every - labels) for split, labels in present.items() if every - labels}


def class_text(label: int, class_names: list[str] | None) -> str:
    return repr(class_names[label]) if class_names else str(label)
