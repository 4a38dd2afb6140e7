"""The planner: every item of every split gets a shard, before any file is opened; every shard path is checked."""

from __future__ import annotations

import posixpath

from prep.core.errors import ConfigError
from prep.core.table import ItemTable
from prep.core.values import Item, ShardPlan
from prep.runfiles.names import RESERVED

_SIDE_SUFFIXES = (".partial", ".idx", ".idx.partial")


def plan_shards(dataset: str, splits: dict[str, list[Item]], writer) -> list[ShardPlan]:
    plans: list[ShardPlan] = []
    for split, items in splits.items():
        if not items:
            continue
        sizes = writer.shard_sizes(len(items), split)
        count = len(sizes)
        start = 0
        for index, size in enumerate(sizes):
            path = check_shard_path(writer.shard_path(dataset, split, index, count), writer.pattern)
            chunk = items[start : start + size]  # a table's slice stays a table: a shard task pickles only its rows
            plans.append(ShardPlan(path, split, index, count, chunk if isinstance(chunk, ItemTable) else tuple(chunk)))
            start += size
    _check_distinct([plan.path for plan in plans], writer.pattern)
    return plans


def check_metadata_paths(paths: list[str], plans: list[ShardPlan], pattern: str) -> None:
    """The run-level files a format writes (dataset_info.json, a wids index) must not be, or sit inside, a shard."""
    shards = {plan.path for plan in plans}
    taken = shards | {path + side for path in shards for side in _SIDE_SUFFIXES}
    for path in paths:
        parent = posixpath.dirname(path)
        while parent and parent not in shards:
            parent = posixpath.dirname(parent)
        if path in taken or parent:
            raise ConfigError(
                f"writer.pattern={pattern!r} names a shard {parent or path!r}, where this format writes its file {path!r}: choose another pattern"
            )
        folders = {posixpath.dirname(s) for s in shards}
        if path in folders:
            raise ConfigError(f"writer.pattern={pattern!r} puts shards in a folder {path!r}, a file this format writes: choose another pattern")


def check_shard_path(path: str, pattern: str) -> str:
    """A generated shard path as it will be written: relative, normalized, inside the output directory, and
    clear of what prep keeps beside the shards. Checked on the names the pattern makes, not on the template:
    `name=..` or `split.name=..` can turn a harmless pattern into a path outside."""
    where = f"writer.pattern={pattern!r} gives the shard path {path!r}"
    if not path or "\0" in path or "\\" in path or any(ord(c) < 32 for c in path):
        raise ConfigError(f"{where}: it must be a plain relative path (no backslashes or control characters)")
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ConfigError(f"{where}: it must stay inside the output directory (no leading /, no empty, '.' or '..' parts); check name, split names and the pattern")
    if parts[0] in RESERVED or any(part.startswith(".prep") for part in parts):
        raise ConfigError(f"{where}: {parts[0]!r} is where prep keeps its own records; choose another pattern")
    if path.endswith(_SIDE_SUFFIXES):
        raise ConfigError(f"{where}: names ending in {', '.join(_SIDE_SUFFIXES)} are prep's temporary and index files")
    if any(len(part.encode()) > 255 for part in parts) or len(path.encode()) > 4000:
        raise ConfigError(f"{where}: a part is longer than file systems allow (255 bytes)")
    return posixpath.normpath(path)


def _check_distinct(paths: list[str], pattern: str) -> None:
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            raise ConfigError(f"writer.pattern={pattern!r} gives two shards the name {path!r}: add {{split}} to it")
        seen.add(path)
    # A shard cannot also be a folder that holds another shard (`a` and `a/b`).
    for path in paths:
        parent = posixpath.dirname(path)
        while parent:
            if parent in seen:
                raise ConfigError(f"writer.pattern={pattern!r} makes {parent!r} both a shard and the folder of {path!r}")
            parent = posixpath.dirname(parent)
