"""The planner: every item of every split gets a shard, before any file is opened."""

from __future__ import annotations

from prep.errors import ConfigError
from prep.stages import Item, ShardPlan


def plan_shards(dataset: str, splits: dict[str, list[Item]], writer) -> list[ShardPlan]:
    plans: list[ShardPlan] = []
    for split, items in splits.items():
        if not items:
            continue
        sizes = writer.shard_sizes(len(items), split)
        count = len(sizes)
        start = 0
        for index, size in enumerate(sizes):
            path = writer.shard_path(dataset, split, index, count)
            plans.append(ShardPlan(path, split, index, count, tuple(items[start : start + size])))
            start += size
    paths = [plan.path for plan in plans]
    if len(set(paths)) != len(paths):
        duplicate = next(p for p in paths if paths.count(p) > 1)
        raise ConfigError(f"writer.pattern={writer.pattern!r} gives two shards the name {duplicate!r}: add {{split}} to it")
    return plans
