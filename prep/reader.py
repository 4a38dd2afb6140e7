"""The reader stage: joins a source with its labels into the item table, in label-file order."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from prep.errors import EncodeError, InputError
from prep.stages import Item, Skip

log = logging.getLogger(__name__)
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass
class Listing:
    items: list[Item]
    class_names: list[str] | None  # class id -> name when labels are names; None for integer labels
    skipped: list[Skip] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)  # images on disk that no label names

    @property
    def label_map(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.class_names or [])}


def label_ids(labels: list[str]) -> tuple[list[int], list[str] | None]:
    """Integer labels stay as they are; class names map to ids by sorted name (the TFDS convention)."""
    if all(_INTEGER.fullmatch(label) for label in labels):
        return [int(label) for label in labels], None
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    return [index[label] for label in labels], names


def read_items(source, labels, limit: int | None = None) -> Listing:
    """Every labelled image as an Item; entries that name no usable file become Skips with the reason."""
    if limit is not None and limit < 1:
        raise InputError(f"limit={limit}: must be a positive number of images, or null for all")
    source.check()
    entries = labels.entries(source)
    if not entries:
        raise InputError(f"{getattr(labels, 'path', source.describe())}: lists no images")
    # Ids come from every entry, so a `limit` smoke run numbers classes as the full run does.
    ids, class_names = label_ids([entry.label for entry in entries])
    if limit is not None:
        entries, ids = entries[:limit], ids[:limit]

    items: list[Item] = []
    skipped: list[Skip] = []
    seen: dict[str, tuple[int, str]] = {}
    for entry, label in zip(entries, ids):
        if entry.ref is not None:
            items.append(Item(entry.name, label, entry.ref))
            continue
        try:
            ref = source.resolve(entry.name)
        except EncodeError as err:
            skipped.append(Skip(entry.name, str(err), entry.where))
            continue
        if ref in seen:
            first_label, first_where = seen[ref]
            if first_label != label:
                raise InputError(f"{entry.where}: {entry.name} is listed again with another label (first at {first_where})")
            skipped.append(Skip(entry.name, f"listed twice (first at {first_where})", entry.where))
            continue
        seen[ref] = (label, entry.where)
        items.append(Item(ref, label, ref))

    unlabelled: list[str] = []
    # Only a label file can leave images out; subdirs and embedded labels cover everything they list.
    if limit is None and getattr(labels, "path", None) and hasattr(source, "image_files"):
        unlabelled = [name for name in source.image_files() if name not in seen]
    if not items:
        reasons = sorted({s.reason for s in skipped})
        raise InputError(f"no usable images: every entry of the label file was skipped ({'; '.join(reasons)})")
    return Listing(items, class_names, skipped, unlabelled)
