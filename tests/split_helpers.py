"""Folders with planted duplicates and groups for the split tests, and a run helper that reads the shards back."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cv2
from conftest import crop, jpeg_bytes

from prep.encoders.passthrough import PassthroughEncoder
from prep.executors.local import LocalExecutor
from prep.labels.subdirs import SubdirLabels
from prep.load import records
from prep.pipeline import convert
from prep.sources.image_dir import ImageDirSource
from prep.writers import TFRecordWriter

SLIM = {"image/encoded": "encoded", "image/class/label": "label", "image/filename": "filename"}


def write(root: Path, name: str, data: bytes) -> str:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(data)
    return name


def resized_copy(rgb, scale: float = 0.5, quality: int = 80) -> bytes:
    """Another file of the same picture: scaled and re-encoded, as a thumbnail or a re-saved download is."""
    small = cv2.resize(rgb, (max(8, round(rgb.shape[1] * scale)), max(8, round(rgb.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    return jpeg_bytes(small, quality=quality)


def class_folders(root: Path, photos, classes=("cat", "dog", "owl"), per_class: int = 20, start: int = 0) -> dict[str, list[str]]:
    names = defaultdict(list)
    for i in range(len(classes) * per_class):
        cls = classes[i % len(classes)]
        names[cls].append(write(root, f"{cls}/{i:03d}.jpg", jpeg_bytes(crop(photos, start + i))))
    return names


def run(out: Path, image_dir: Path, splitter, *, labels=None, workers: int = 1, **kwargs) -> dict:
    return convert(
        name="pets",
        source=ImageDirSource(str(image_dir)),
        labels=labels or SubdirLabels(),
        splitter=splitter,
        encoder=kwargs.pop("encoder", PassthroughEncoder()),
        writer=TFRecordWriter(shard_size=kwargs.pop("shard_size", 25), features=SLIM),
        executor=LocalExecutor(workers),
        output_dir=str(out),
        progress=False,
        **kwargs,
    )


def split_of_files(out: Path) -> dict[str, str]:
    """image/filename -> split, read back from the shards (a file written twice fails)."""
    found = {}
    summary = json.loads((out / "summary.json").read_text())
    for split in summary["splits"]:
        for record in records(str(out), split):
            name = record["image/filename"]
            name = name.decode() if isinstance(name, bytes) else name
            assert name not in found, f"{name} written twice"
            found[name] = split
    return found
