"""Skipped images: the max_skipped limit, and the log that names the first few and counts the rest."""

from __future__ import annotations

import logging
from collections import Counter

from prep.core.errors import ConfigError, InputError
from prep.core.values import Skip

log = logging.getLogger(__name__)


def skip_limit(max_skipped, total: int) -> int | None:
    """max_skipped as a number of images: a count (>= 1, or 0 for none) or a fraction of all images (< 1)."""
    if max_skipped is None:
        return None
    if isinstance(max_skipped, bool) or not isinstance(max_skipped, (int, float)) or max_skipped < 0 or (max_skipped > 1 and max_skipped != int(max_skipped)):
        raise ConfigError(f"max_skipped={max_skipped!r}: give a count (e.g. 100), a fraction below 1 (e.g. 0.01), or null for no limit")
    return int(max_skipped) if max_skipped >= 1 or max_skipped == 0 else int(max_skipped * total)


def check_skips(skipped: list[Skip], limit: int | None, max_skipped) -> None:
    if limit is not None and len(skipped) > limit:
        first = skipped[0]
        raise InputError(
            f"{len(skipped)} images skipped, more than max_skipped={max_skipped} allows ({limit}); "
            f"the first: {first.source}: {first.reason}"
        )


class SkipLog:
    """Skipped images as the log says them: each of the first SHOWN of a stage (planning, the scan, writing) on
    its own line, the rest counted by kind and said in one line at the stage's end. A label file naming 900,000
    absent images is then a few lines, not 900,000; summary.json lists every one."""

    SHOWN = 20

    def __init__(self) -> None:
        self.shown = 0
        self.more: Counter[str] = Counter()

    def add(self, skip: Skip) -> None:
        if self.shown < self.SHOWN:
            self.shown += 1
            if skip.where:
                log.warning("skipped %s (%s): %s", skip.source, skip.where, skip.reason)
            else:
                log.warning("skipped %s: %s", skip.source, skip.reason)
        else:
            self.more[skip.reason.split(":")[0]] += 1  # the kind: a reason's details may name the file

    def end(self) -> None:
        if self.more:
            total = sum(self.more.values())
            kinds = "; ".join(f"{count:,} {kind}" for kind, count in self.more.most_common(3))
            rest = f"; {len(self.more) - 3} more kind(s)" if len(self.more) > 3 else ""
            log.warning("skipped %s more images (%s%s): summary.json lists every one", f"{total:,}", kinds, rest)
            self.more.clear()
