"""The progress bar on a terminal: images done of all, images/s, MB/s (when writing) and the time left."""

from __future__ import annotations

import sys


class NoBar:
    """What the steps call on a progress bar, doing nothing (progress=false, or no terminal)."""

    n = 0

    def update(self, n: int) -> None:
        self.n += n

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int, enabled: bool, desc: str = "converting"):
    """A tqdm bar on a terminal; none in a log file or with progress=false (and then no tqdm import)."""
    if not enabled or not sys.stderr.isatty():
        return NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="img", unit_scale=True, desc=desc, leave=False, smoothing=0.1)


def size_text(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes} bytes"
