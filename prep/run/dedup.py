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

import numpy as np

from prep.core.errors import InputError
from prep.core.table import ItemTable
from prep.core.unionfind import UnionFind
from prep.run.capped import CappedLog
from prep.core.values import Item, Skip
from prep.run.scan import Scanned

log = logging.getLogger(__name__)
EVAL_FIRST = {"test": 0, "validation": 1, "train": 2}  # which copy dedup_keep=first keeps in predefined splits


def _bands(distance: int) -> list[int]:
    """Masks of distance + 1 disjoint bands of the 64 bits: two hashes within `distance` bits agree exactly on
    at least one of them (the pigeonhole principle), so candidates come from band buckets, not all n^2 pairs."""
    bands = distance + 1
    edges = [round(i * 64 / bands) for i in range(bands + 1)]
    return [((1 << (edges[b + 1] - edges[b])) - 1) << edges[b] for b in range(bands)]


def near_leaders(hashes: list[tuple[str, int, int]], distance: int) -> dict[int, int]:
    """index -> the index of its group's first image, for images within `distance` bits of an earlier one.

    Leader clustering, in name order: an image joins the nearest earlier leader within the distance, or
    leads a group of its own. Unlike joining every pair (union-find), a chain of small steps cannot pull
    unrelated images into one group: every member is within `distance` of its leader.
    """
    masks = _bands(distance)
    buckets: list[dict[int, list[tuple[int, int]]]] = [defaultdict(list) for _ in masks]
    joined: dict[int, int] = {}
    for _, index, value in sorted(hashes):
        best = None
        for mask, bucket in zip(masks, buckets):
            for leader, leader_value in bucket.get(value & mask, ()):
                bits = (value ^ leader_value).bit_count()
                if bits <= distance and (best is None or (bits, leader) < best):
                    best = (bits, leader)
        if best is not None:
            joined[index] = best[1]
            continue
        for mask, bucket in zip(masks, buckets):
            bucket[value & mask].append((index, value))
    return joined


@dataclass
class DupGroup:
    members: list[int]  # item indexes, in label-file order
    kind: str  # "exact" or "near"
    parts: list[list[int]] = field(default_factory=list)  # the byte-identical copies within the group
    conflict: bool = False
    kept: set[int] = field(default_factory=set)


def find_groups(entries: list[Scanned], near_distance: int | None, names: list[str] | None = None) -> list[DupGroup]:
    """Groups of two or more images that are the same picture (byte-identical, or near with a distance).

    Near matching works on one image per set of byte-identical copies, in name order (names), so the
    groups do not depend on the order the label file lists the images in.
    """
    uf = UnionFind(len(entries))
    first: dict[bytes, int] = {}
    for index, entry in enumerate(entries):
        if entry.digest is None:
            continue
        other = first.setdefault(entry.digest, index)
        if other != index:
            uf.union(other, index)
    if near_distance is not None:
        names = names or [str(i) for i in range(len(entries))]
        hashes = [(names[i], i, e.dhash) for i, e in enumerate(entries) if e.dhash is not None and e.error is None and uf.find(i) == i]
        for index, leader in near_leaders(hashes, near_distance).items():
            uf.union(leader, index)
    groups = []
    for members in uf.components():
        parts: dict[bytes, list[int]] = defaultdict(list)
        for i in members:
            parts[entries[i].digest or bytes([i % 256]) + str(i).encode()].append(i)
        kind = "exact" if len(parts) == 1 else "near"
        groups.append(DupGroup(members, kind, sorted(parts.values(), key=lambda p: p[0])))
    return groups


@dataclass
class Resolution:
    items: list[Item]  # what goes on to the splitter
    units: list[list[int]]  # indexes into items of images that must share a split
    skipped: list[Skip]
    report: dict  # summary.json's "duplicates"


def _shown(items: list[Item], members: list[int], class_names) -> str:
    """The copies of a conflict, one per label first, so the message names the copies that disagree."""
    by_label: dict[int, list[int]] = defaultdict(list)
    for i in members:
        by_label[items[i].label].append(i)
    firsts = [group[0] for group in by_label.values()]
    rest = [i for i in members if i not in firsts]
    shown = [f"{items[i].name} ({class_names[items[i].label] if class_names else items[i].label})" for i in (firsts + rest)[:4]]
    more = len(members) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def resolve(items: list[Item], groups: list[DupGroup], *, mode: str, keep: str, on_error: str, given_split=None, class_names=None) -> Resolution:
    """Apply dedup_keep and on_error to the groups; given_split(item) is the predefined split, or None.

    Byte-identical copies with different labels are a conflict whatever group they are in: on_error=fail
    stops, skip leaves every copy of that picture out. A near group whose labels differ is listed and kept.
    """
    drop: set[int] = set()
    skipped: list[Skip] = []
    conflicts = []
    for group in groups:
        for part in group.parts:
            if len({items[i].label for i in part}) > 1:
                conflicts.append(_shown(items, part, class_names))
    if conflicts and on_error == "fail":
        more = f" (and {len(conflicts) - 1} more such groups)" if len(conflicts) > 1 else ""
        raise InputError(f"the same image with different labels: {conflicts[0]}{more}; fix the labels, or pass on_error=skip to leave every copy out")
    said_conflicts = CappedLog(log, "{count} more groups of the same image with different labels, every copy left out: summary.json duplicates lists every one")
    said_near = CappedLog(log, "{count} more near-duplicate groups with different labels, kept: summary.json duplicates lists every one")
    for group in groups:
        for part in group.parts:
            if len({items[i].label for i in part}) > 1:
                group.conflict = True
                for i in part:
                    drop.add(i)
                    others = [items[j].name for j in part if j != i]
                    skipped.append(Skip(items[i].name, f"the same image as {', '.join(others[:3])} with another label (a duplicate conflict)"))
                said_conflicts.warning("the same image with different labels, every copy left out: %s", _shown(items, part, class_names))
        remaining = [i for i in group.members if i not in drop]
        if len({items[i].label for i in remaining}) > 1:
            group.conflict = True
            said_near.warning("near duplicates with different labels (kept, in one split; check them): %s", _shown(items, remaining, class_names))
        if keep == "first" and remaining and not group.conflict:
            order = sorted(remaining, key=lambda i: (EVAL_FIRST.get(given_split(items[i]), 3) if given_split else 0, i))
            group.kept = {order[0]}
            drop.update(order[1:])
        else:
            group.kept = set(remaining)
    said_conflicts.end()
    said_near.end()
    kept_mask = np.ones(len(items), dtype=bool)
    kept_mask[sorted(drop)] = False
    new_index = np.cumsum(kept_mask) - 1  # an item's position among the kept ones
    kept = np.flatnonzero(kept_mask)
    kept_items = items.take(kept) if isinstance(items, ItemTable) else [items[i] for i in kept.tolist()]
    units = [[int(new_index[i]) for i in g.members if kept_mask[i]] for g in groups]
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
        "conflicts": sum(1 for g in groups if g.conflict),
    }
    return Resolution(kept_items, units, skipped, report)
