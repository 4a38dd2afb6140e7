"""The values that flow between stages: items from the reader, encoded images, records, shard plans and results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Union

# What a source hands the encoder: the bytes of an encoded image file, or a uint8 pixel array
# (height x width, or height x width x channels in RGB order).
Payload = Union[bytes, "numpy.ndarray"]  # noqa: F821


class Item(NamedTuple):
    """One image to convert. A tuple, because the item table is the only thing that grows with the dataset."""

    name: str  # relative path (or generated id): written as image/filename and used in every message
    label: int
    ref: Union[str, int]  # how the source finds the image again: a relative path, an index, a byte offset


class Encoded(NamedTuple):
    """An encoded image and the facts a record stores about it (a tuple: one is made for every record)."""

    data: bytes
    format: str  # "jpeg", "png", "raw", ...
    height: int
    width: int
    channels: int
    colorspace: str = ""
    oriented: bool = False  # the file asks for an EXIF orientation other than 1 (upright)
    reoriented: bool = False  # ... and the stored pixels were turned upright (encoder.exif=apply)
    reduced: int = 1  # decoded at 1/reduced of its size by libjpeg (encoder.reduce=dct with resize)


@dataclass(frozen=True)
class Skip:
    """An image left out of the output, and why."""

    source: str  # the image as the label file (or source) names it
    reason: str
    where: str = ""  # the label-file line, for problems found there

    def as_dict(self) -> dict:
        return {"source": self.source, "reason": self.reason, **({"where": self.where} if self.where else {})}


@dataclass(frozen=True)
class ShardPlan:
    """Everything one shard task needs besides the stages: where to write and which items, in order."""

    path: str  # relative to the output directory
    split: str
    index: int
    count: int
    items: tuple[Item, ...]


@dataclass
class ShardResult:
    path: str
    split: str
    num_records: int
    bytes: int
    sha256: str
    class_counts: dict[int, int] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)  # records per stored image format
    skipped: list[Skip] = field(default_factory=list)
    extra_files: list[str] = field(default_factory=list)  # e.g. DALI index files written beside the shard
    # the range of the stored images' shapes: {"height": [low, high], "width": [low, high], "channels": [...]}
    shapes: dict = field(default_factory=dict)
    oriented: int = 0  # images whose EXIF orientation is not 1
    reoriented: int = 0  # ... of them stored turned upright (encoder.exif=apply)
    # a histogram of the stored images' heights and widths over SIZE_BINS: {"height": [n, ...], "width": [n, ...]}
    sizes: dict = field(default_factory=dict)
    reductions: dict[int, int] = field(default_factory=dict)  # records per decode scale denominator (Encoded.reduced)

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "split": self.split,
            "num_records": self.num_records,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "class_counts": {str(k): v for k, v in self.class_counts.items()},
            "formats": self.formats,
            "skipped": [s.as_dict() for s in self.skipped],
            "extra_files": self.extra_files,
            "shapes": self.shapes,
            "oriented": self.oriented,
            "reoriented": self.reoriented,
            "sizes": self.sizes,
            "reductions": {str(k): v for k, v in self.reductions.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ShardResult":
        return cls(
            data["path"],
            data["split"],
            data["num_records"],
            data["bytes"],
            data["sha256"],
            {int(k): v for k, v in data["class_counts"].items()},
            data["formats"],
            [Skip(**s) for s in data["skipped"]],
            data["extra_files"],
            data["shapes"],
            data["oriented"],
            data["reoriented"],
            data["sizes"],  # a manifest from before the histogram: the shard is written again (see outputs.reusable)
            {int(k): v for k, v in data["reductions"].items()},  # likewise from before encoder.reduce
        )


def merged_shapes(ranges) -> dict:
    """Several shapes ranges as one (empty ranges, of shards with no record, are left out)."""
    out: dict = {}
    for shapes in ranges:
        if not shapes:
            continue
        if not out:
            out = {key: list(value) for key, value in shapes.items()}
            continue
        for key in ("height", "width"):
            out[key] = [min(out[key][0], shapes[key][0]), max(out[key][1], shapes[key][1])]
        out["channels"] = sorted(set(out["channels"]) | set(shapes["channels"]))
    return out


# Lower edges of the image-size histogram bins in pixels (half octaves): bin i holds sizes in
# [SIZE_BINS[i], SIZE_BINS[i + 1]), the last one everything from 8192 up. A fixed list, so shards merge.
SIZE_BINS = (0, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192)


def merged_sizes(histograms) -> dict:
    """Several shards' size histograms as summary.json's `image_sizes`: the bins' lower edges and the counts."""
    out = {"bins": list(SIZE_BINS), "height": [0] * len(SIZE_BINS), "width": [0] * len(SIZE_BINS)}
    for sizes in histograms:
        for key in ("height", "width"):
            for i, count in enumerate((sizes or {}).get(key, ())):
                out[key][i] += count
    return out


class ShardStats:
    """What a shard task counts about the records it writes, gathered with little work per record (a few
    appends) and summed up once, when the shard is done."""

    def __init__(self) -> None:
        from array import array

        self.labels: list = []
        self.heights = array("q")
        self.widths = array("q")
        self.kinds: dict[tuple, int] = {}  # (format, channels, oriented, reoriented, reduced) -> records

    def add(self, label: int, encoded: Encoded) -> None:
        self.labels.append(label)
        self.heights.append(encoded.height)
        self.widths.append(encoded.width)
        kind = (encoded.format, encoded.channels, encoded.oriented, encoded.reoriented, encoded.reduced)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def result(self, path: str, split: str, num_records: int, size: int, sha256: str, skipped: list, extra: list) -> "ShardResult":
        from collections import Counter

        import numpy as np

        formats: Counter = Counter()
        reductions: Counter = Counter()
        channels: set = set()
        oriented = reoriented = 0
        for (fmt, chans, is_oriented, is_reoriented, reduced), n in self.kinds.items():
            formats[fmt] += n
            reductions[reduced] += n
            channels.add(chans)
            oriented += n * is_oriented
            reoriented += n * is_reoriented
        shapes: dict = {}
        sizes: dict = {}
        if self.labels:
            heights = np.frombuffer(self.heights, dtype=np.int64)
            widths = np.frombuffer(self.widths, dtype=np.int64)
            shapes = {"height": [int(heights.min()), int(heights.max())], "width": [int(widths.min()), int(widths.max())], "channels": sorted(channels)}
            edges = np.array(SIZE_BINS, dtype=np.int64)
            sizes = {
                key: np.bincount(np.searchsorted(edges, values, side="right") - 1, minlength=len(SIZE_BINS)).tolist()
                for key, values in (("height", heights), ("width", widths))
            }
        return ShardResult(
            path, split, num_records, size, sha256, dict(Counter(self.labels)), dict(formats), skipped, extra, shapes,
            oriented=int(oriented), reoriented=int(reoriented), sizes=sizes, reductions=dict(reductions),
        )
