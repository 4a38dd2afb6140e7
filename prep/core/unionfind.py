"""A disjoint-set forest over 0..n-1: the groups that must share a split (duplicate copies, split.group_by)."""

from __future__ import annotations

from collections import defaultdict


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
