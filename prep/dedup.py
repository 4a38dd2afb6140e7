"""Duplicate groups from the content scan, and what a run keeps of them.

Exact duplicates share a sha256; near duplicates (split.dedup=near) have difference hashes within
split.near_distance bits. A group's copies always land in one split; with dedup_keep=first only one of them
is written. Copies with different labels are a conflict: for exact copies on_error decides (skip every copy,
or stop); a near match is no proof, so near conflicts are listed and kept together.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from prep.errors import InputError
from prep.scan import Scanned
from prep.stages import Item, Skip

log = logging.getLogger(__name__)
EVAL_FIRST = {"test": 0, "validation": 1, "train": 2}  # which copy dedup_keep=first keeps in predefined splits


class UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def components(self, members=None) -> list[list[int]]:
        """Components of more than one element, each in index order, ordered by their first element."""
        groups: dict[int, list[int]] = defaultdict(list)
        for x in range(len(self.parent)) if members is None else members:
            groups[self.find(x)].append(x)
        return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def _near_pairs(hashes: list[tuple[int, int]], distance: int):
    """Pairs of indexes whose 64-bit hashes differ in at most `distance` bits.

    By the pigeonhole principle two hashes within d bits agree exactly on at least one of d + 1 disjoint
    bands: candidates come from band buckets (multi-index hashing), not from all n^2 pairs.
    """
    bands = distance + 1
    edges = [round(i * 64 / bands) for i in range(bands + 1)]
    seen: set[tuple[int, int]] = set()
    for b in range(bands):
        low, high = edges[b], edges[b + 1]
        mask = ((1 << (high - low)) - 1) << low
        buckets: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for index, value in hashes:
            buckets[value & mask].append((index, value))
        for bucket in buckets.values():
            for i in range(len(bucket)):
                a, va = bucket[i]
                for j in range(i + 1, len(bucket)):
                    c, vc = bucket[j]
                    pair = (a, c)
                    if pair not in seen and (va ^ vc).bit_count() <= distance:
                        seen.add(pair)
                        yield pair


@dataclass
class DupGroup:
    members: list[int]  # item indexes, in label-file order
    kind: str  # "exact" or "near"
    conflict: bool = False
    kept: set[int] = field(default_factory=set)


def find_groups(entries: list[Scanned], near_distance: int | None) -> list[DupGroup]:
    """Groups of two or more images that are the same picture (byte-identical, or near with a distance)."""
    uf = UnionFind(len(entries))
    first: dict[bytes, int] = {}
    for index, entry in enumerate(entries):
        if entry.digest is None:
            continue
        other = first.setdefault(entry.digest, index)
        if other != index:
            uf.union(other, index)
    if near_distance is not None:
        hashes = [(i, e.dhash) for i, e in enumerate(entries) if e.dhash is not None and e.error is None]
        for a, b in _near_pairs(hashes, near_distance):
            uf.union(a, b)
    groups = []
    for members in uf.components():
        exact = len({entries[i].digest for i in members}) == 1
        groups.append(DupGroup(members, "exact" if exact else "near"))
    return groups


@dataclass
class Resolution:
    items: list[Item]  # what goes on to the splitter
    units: list[list[int]]  # indexes into items of images that must share a split
    skipped: list[Skip]
    report: dict  # summary.json's "duplicates"


def resolve(items: list[Item], groups: list[DupGroup], *, mode: str, keep: str, on_error: str, given_split=None) -> Resolution:
    """Apply dedup_keep and on_error to the groups; given_split(item) is the predefined split, or None."""
    drop: set[int] = set()
    skipped: list[Skip] = []
    conflicts = 0
    for group in groups:
        labels = {items[i].label for i in group.members}
        group.conflict = len(labels) > 1
        if group.conflict:
            conflicts += 1
            first = items[group.members[0]]
            others = ", ".join(f"{items[i].name} (label {items[i].label})" for i in group.members[1:4])
            text = f"{first.name} (label {first.label}) is the same image as {others}" if group.kind == "exact" else (
                f"{first.name} (label {first.label}) looks like {others}")
            if group.kind == "exact":
                if on_error == "fail":
                    raise InputError(f"duplicates with different labels: {text}; fix the labels, or pass on_error=skip to leave every copy out")
                for i in group.members:
                    drop.add(i)
                    others_of = [items[j].name for j in group.members if j != i]
                    skipped.append(Skip(items[i].name, f"the same image as {', '.join(others_of[:3])} with another label (a duplicate conflict)"))
                log.warning("duplicates with different labels, every copy left out: %s", text)
                continue
            log.warning("near duplicates with different labels (kept; check them): %s", text)
        if keep == "first" and not group.conflict:
            order = sorted(group.members, key=lambda i: (EVAL_FIRST.get(given_split(items[i]), 3) if given_split else 0, i))
            group.kept = {order[0]}
            drop.update(order[1:])
        else:
            group.kept = set(group.members) - drop
    kept_items = [item for i, item in enumerate(items) if i not in drop]
    new_index = {}
    for i in range(len(items)):
        if i not in drop:
            new_index[i] = len(new_index)
    units = [[new_index[i] for i in g.members if i in new_index] for g in groups]
    units = [u for u in units if len(u) > 1]
    report = {
        "mode": mode,
        "keep": keep,
        "groups": [
            {
                "kind": g.kind,
                "names": [items[i].name for i in g.members],
                "labels": [items[i].label for i in g.members],
                "kept": [i in g.kept for i in g.members],
                "conflict": g.conflict,
            }
            for g in groups
        ],
        "dropped": len(drop) - len(skipped),
        "conflicts": conflicts,
    }
    return Resolution(kept_items, units, skipped, report)
