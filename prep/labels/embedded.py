"""EmbeddedLabels: the source carries its labels (digits, pixel CSV)."""

from __future__ import annotations

from collections.abc import Iterator

from prep.labels.base import LabelFormat, check_kind
from prep.sources.base import LabelEntry


class EmbeddedLabels(LabelFormat):
    """Labels that come with the source itself (digits, pixel CSV rows)."""

    def __init__(self, kind: str = "auto") -> None:
        self.kind = check_kind(kind)

    def iter_entries(self, source) -> Iterator[LabelEntry]:
        return iter(source.labelled_entries())  # a source without labels of its own refuses, naming itself
