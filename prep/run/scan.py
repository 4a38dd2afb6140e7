"""The content scan before splitting: every image read once on the executor's workers, its header checked
(bad files are known before the split, so proportions hold over what will be written), its bytes hashed
(exact duplicates) and, for split.dedup=near, a 64-bit difference hash of its decoded thumbnail."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import NamedTuple

from prep.core.errors import EncodeError
from prep.core.values import Item
from prep.executors.local import count_processed

CHUNK = 512  # images per scan task: enough to amortise a task, small enough to spread over the workers
DIGEST_BYTES = 16  # 128 bits of sha256: collisions are out of reach, and 1M digests stay small


class Scanned(NamedTuple):
    """What the scan learnt about one image; error is set (and the rest empty) when it cannot be used."""

    digest: bytes | None
    size: int
    format: str
    height: int
    width: int
    dhash: int | None
    error: str | None = None


@dataclass(frozen=True)
class ScanJob:
    source: object
    hashing: bool
    perceptual: bool
    max_pixels: int


@dataclass(frozen=True)
class ScanTask:
    index: int
    items: tuple[Item, ...]

    @property
    def path(self) -> str:  # named in an executor's error messages
        return f"scan of images {self.index * CHUNK + 1}-{self.index * CHUNK + len(self.items)}"


def scan_task(job: ScanJob, task: ScanTask) -> tuple[int, list[Scanned]]:
    out = []
    for done, item in enumerate(task.items, start=1):
        out.append(scan_one(job, item))
        if done % 32 == 0:
            count_processed(32)
    count_processed(len(task.items) % 32)
    return task.index, out


def scan_one(job: ScanJob, item: Item) -> Scanned:
    try:
        payload = job.source.read(item.ref)
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return _scan_bytes(bytes(payload), job)
        return _scan_array(payload, job)
    except EncodeError as err:
        return Scanned(None, 0, "", 0, 0, None, str(err))


def _scan_bytes(data: bytes, job: ScanJob) -> Scanned:
    from prep.formats.images import check_complete, read_header

    info = read_header(data)
    if info.height * info.width > job.max_pixels:
        raise EncodeError(f"{info.width}x{info.height} is over max_pixels={job.max_pixels} (a decompression-bomb guard; raise it to convert)")
    check_complete(data, info.format)
    digest = hashlib.sha256(data).digest()[:DIGEST_BYTES] if job.hashing else None
    dhash = _dhash_bytes(data, info) if job.perceptual else None
    return Scanned(digest, len(data), info.format, info.height, info.width, dhash)


def _scan_array(pixels, job: ScanJob) -> Scanned:
    import numpy as np

    pixels = np.ascontiguousarray(pixels)
    if pixels.ndim < 2 or pixels.size == 0:
        raise EncodeError(f"pixel array of shape {pixels.shape}: expected HxW or HxWxC")
    digest = None
    if job.hashing:
        # The shape and type are part of the image: the same bytes as 8x8 and as 4x16 are two images.
        digest = hashlib.sha256(f"{pixels.shape}{pixels.dtype}".encode() + pixels.tobytes()).digest()[:DIGEST_BYTES]
    dhash = dhash_pixels(pixels) if job.perceptual else None
    return Scanned(digest, pixels.nbytes, "raw", pixels.shape[0], pixels.shape[1], dhash)


def _dhash_bytes(data: bytes, info) -> int | None:
    """The difference hash of an encoded image, decoded as small as libjpeg allows (1/8 scale in the DCT
    domain for JPEGs whose reduced size still exceeds the 9x8 thumbnail)."""
    import cv2
    import numpy as np

    flag = cv2.IMREAD_GRAYSCALE
    if info.format == "jpeg" and min(info.height, info.width) >= 8 * 32:
        flag = cv2.IMREAD_REDUCED_GRAYSCALE_8
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        pixels = None
    if pixels is None:
        raise EncodeError(f"cannot decode the image data ({info.format}) for split.dedup=near")
    return dhash_pixels(pixels)


def dhash_pixels(pixels) -> int | None:
    """64-bit difference hash: the image as 9x8 gray, one bit per horizontally adjacent pair (left brighter).

    Robust to scaling, re-encoding and small colour changes; a crop or a rotation is a different image.
    None for a blank image: byte-identical blanks are still found by the exact hash.
    """
    import cv2
    import numpy as np

    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        pixels = pixels.astype(np.float32)
    if pixels.ndim == 3:
        pixels = pixels[..., :3].mean(axis=2) if pixels.shape[2] >= 3 else pixels[..., 0]
    small = cv2.resize(np.ascontiguousarray(pixels, dtype=np.float32), (9, 8), interpolation=cv2.INTER_AREA)
    if float(small.max() - small.min()) < 2:
        return None  # a blank (or nearly blank) image: its hash says nothing, and it would match every other one
    bits = (small[:, :-1] > small[:, 1:]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


@dataclass
class ScanReport:
    entries: list[Scanned]
    seconds: float
    hashed: bool
    perceptual: bool

    def summary(self) -> dict:
        return {
            "images": len(self.entries),
            "bytes": sum(e.size for e in self.entries),
            "seconds": round(self.seconds, 3),
            "hashed": self.hashed,
            "perceptual": self.perceptual,
        }


def scan(items: list[Item], source, executor, *, hashing: bool, perceptual: bool, max_pixels: int, progress=None) -> ScanReport:
    """Scanned entries for items, in item order, whatever the number of workers."""
    started = time.perf_counter()
    job = ScanJob(source, hashing, perceptual, max_pixels)
    tasks = [ScanTask(i, items[start : start + CHUNK]) for i, start in enumerate(range(0, len(items), CHUNK))]
    parts: dict[int, list[Scanned]] = {}
    for index, entries in executor.map(scan_task, job, tasks, progress=progress):
        parts[index] = entries
    entries = [entry for i in range(len(tasks)) for entry in parts[i]]
    return ScanReport(entries, time.perf_counter() - started, hashing, perceptual)
