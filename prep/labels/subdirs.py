"""SubdirLabels: the class is the folder an image sits in (DIR/<class>/<image>)."""

from __future__ import annotations

from collections.abc import Iterator

from prep.core.errors import InputError
from prep.labels.base import LabelFormat, check_kind
from prep.sources.base import LabelEntry
from prep.sources.walk import is_image_name


class SubdirLabels(LabelFormat):
    """The class of an image is the top-level folder it is in (ImageNet train / Keras layout); no label file."""

    def __init__(self, kind: str = "auto") -> None:
        self.kind = check_kind(kind)
        self.level = 0  # 1 with split=folders: DIR/<split>/<class>/<image>

    def _files(self, source) -> Iterator[tuple[str, bool]]:
        """(file, converted) for every file of the folder, sorted: unknown extensions and hidden files or
        folders are left out. Hidden means any part of the path starts with a dot: .DS_Store, macOS's
        ._name.jpg copies and Jupyter's .ipynb_checkpoints/ are never images of the class they sit in."""
        if not source.lists_files:
            raise InputError(f"labels=subdirs reads class folders, but {source.describe()} has none: use source=image_dir")
        for name in source.files():
            yield name, is_image_name(name)

    def ignored(self, source) -> list[str]:
        """Files in the folder that are not converted, as relative paths: they are counted, not silently lost.
        Symlinks leading outside, broken ones, FIFOs, aliased class folders: named with the reason."""
        left = [name for name, used in self._files(source) if not used]
        unusable = source.unusable()
        return left + [f"{name} ({reason})" for name, reason in sorted(unusable.items())]

    def iter_entries(self, source) -> Iterator[LabelEntry]:
        found = False
        where = source.describe()
        for name, used in self._files(source):
            if not used:
                continue
            parts = name.split("/")
            if len(parts) < self.level + 2:
                at = "at the top" if len(parts) == 1 else f"directly in {parts[0]}/"
                layout = "DIR/<split>/<class>/<image> (split=folders)" if self.level else "DIR/<class>/<image>"
                raise InputError(f"{where}/{name}: labels=subdirs needs every image inside a class folder, {layout}; this one is {at}")
            found = True
            yield LabelEntry(name, parts[self.level], f"{where}/{name}")
        if not found:
            raise InputError(f"source.image_dir={where}: no images in class folders")
