"""SpaceLabels: `name label` lines (caffe's val.txt)."""

from __future__ import annotations

from collections.abc import Iterator

from prep.core.errors import InputError
from prep.labels.base import LabelFormat, check_kind, excerpt, label_lines, label_text
from prep.sources.base import LabelEntry


class SpaceLabels(LabelFormat):
    """Caffe/ImageNet style: "filename label" per line, separated by spaces or tabs; blank lines and # comments skipped."""

    def __init__(self, path: str, kind: str = "auto") -> None:
        self.path = path
        self.kind = check_kind(kind)

    def iter_entries(self, source) -> Iterator[LabelEntry]:
        path = self.path
        for number, line in label_lines(path):
            parts = line.split()
            if len(parts) == 2 and parts[1].isascii() and parts[1].isalnum() and parts[0][0] != "#":  # "name 3", "name n01440764"
                yield LabelEntry(parts[0], parts[1], f"{path}:{number}")
                continue
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            where = f"{path}:{number}"
            if len(parts) != 2:
                raise InputError(f'{where}: expected "filename label", got {excerpt(line)}')
            yield LabelEntry(parts[0], label_text(parts[1], where, line), where)
