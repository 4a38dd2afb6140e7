"""Log lines of one kind, capped: the first few each on a line of their own, the rest counted in one line.

A real dataset with 1,500 cross-class copies, or 1,000 classes too small for a split, must not bury the one
line that matters under a screen of its kind. summary.json (and plan.json) keep every one.
"""

from __future__ import annotations

import logging


class CappedLog:
    SHOWN = 10

    def __init__(self, logger: logging.Logger, rest: str) -> None:
        """rest: the closing line, with {count} for the lines not shown (e.g. "{count} more duplicate groups
        with different labels: summary.json lists every one")."""
        self.logger = logger
        self.rest = rest
        self.shown = 0
        self.hidden = 0

    def warning(self, message: str, *args) -> None:
        if self.shown < self.SHOWN:
            self.shown += 1
            self.logger.warning(message, *args)
        else:
            self.hidden += 1

    def end(self) -> None:
        if self.hidden:
            self.logger.warning(self.rest.format(count=f"{self.hidden:,}"))
            self.hidden = 0
