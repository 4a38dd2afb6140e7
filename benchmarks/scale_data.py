"""The data `make bench-scale` measures on: many small labelled JPEGs in one folder, made from scikit-learn's
sample photos (no download), kept under benchmarks/data/ and made once per size."""

from __future__ import annotations

import os
import shutil
import sys
import time
from multiprocessing import Pool
from pathlib import Path

CLASSES = 1000
_PHOTOS = None


def _init() -> None:
    global _PHOTOS
    from sklearn.datasets import load_sample_images

    _PHOTOS = [image[..., ::-1].copy() for image in load_sample_images().images]


def name_of(i: int) -> str:
    return f"img_{i:07d}.jpg"


def _make_range(args) -> int:
    """Images start..stop: crops of 28..39 pixels of a sample photo, about 900 bytes each."""
    start, stop, folder = args
    import cv2

    total = 0
    for i in range(start, stop):
        photo = _PHOTOS[i % 2]
        size = 28 + (i * 7) % 12
        top, left = (i * 71) % (photo.shape[0] - size), (i * 113) % (photo.shape[1] - size)
        ok, data = cv2.imencode(".jpg", photo[top : top + size, left : left + size], [cv2.IMWRITE_JPEG_QUALITY, 88 + i % 8])
        with open(os.path.join(folder, name_of(i)), "wb") as f:
            f.write(data)
        total += len(data)
    return total


def make_small(data_dir: Path, count: int) -> tuple[Path, Path]:
    """(image folder, labels.txt) of `count` small JPEGs in one folder and one space-separated label file."""
    root = data_dir / f"small_{count}"
    images, labels = root / "images", root / "labels.txt"
    if labels.exists():
        return images, labels
    shutil.rmtree(root, ignore_errors=True)
    images.mkdir(parents=True)
    started = time.time()
    step = 10_000
    with Pool(os.cpu_count(), initializer=_init) as pool:
        pool.map(_make_range, [(s, min(count, s + step), str(images)) for s in range(0, count, step)])
    with open(labels.with_suffix(".partial"), "w") as f:
        for s in range(0, count, step):
            f.write("".join(f"{name_of(i)} {(i * 7919) % CLASSES}\n" for i in range(s, min(count, s + step))))
    os.replace(labels.with_suffix(".partial"), labels)
    print(f"generated {count:,} small JPEGs in {time.time() - started:.0f} s", flush=True)
    return images, labels


if __name__ == "__main__":
    print(make_small(Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent / "data", int(sys.argv[1])))
