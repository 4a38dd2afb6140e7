"""writer=webdataset: WebDataset tar shards (ustar written by prep, byte for byte the same on every run) and a
wids index per split, `{dataset}-{split}.wids.json`, for random access with wids.ShardListDataset."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from urllib.parse import urlparse

from prep.core.errors import ConfigError, WriteError
from prep.formats import tar, wds
from prep.writers.base import RecordWriter
from prep.writers.sink import ShardSink

WIDS_KIND = "wids-shard-index-v1"  # what wids' own indexer (widsindex) writes as __kind__
# Characters a wids shard url cannot hold: wids parses urls, so these would cut the shard's path short.
_URL_BREAKERS = "?#;"


class WebDatasetWriter(RecordWriter):
    """WebDataset tar shards: one sample per image (the image under its format's extension, .npy for raw
    pixels, .cls, .json), keys that are the sample's position in its split; a wids index per split.

    The `features` group does not apply: a sample's members are fixed. summary.json lists what a sample
    reads back as (wds.FIELDS): `image`, `cls` and `json.<field>`.
    """

    format = "webdataset"
    types = ("bytes", "int64")

    def __init__(
        self,
        shard_size: int | None = 1000,
        num_shards: int | None = None,
        pattern: str = "{dataset}-{split}-{index:06d}.tar",
        shard_fill: str = "even",
        wids_index: bool = True,
    ) -> None:
        super().__init__(shard_size, num_shards, pattern, wds.FIELDS, shard_fill)
        self.wids_index = wids_index
        # Where each planned shard starts in its split, so a sample's key is its position in the split.
        # Filled in by the planner's calls (shard_sizes, then shard_path for each shard of a split), before
        # any shard is written; it travels with the writer to the workers.
        self._split_sizes: dict[str, list[int]] = {}
        self._first: dict[str, int] = {}

    def stores_shape(self) -> bool:
        return True  # raw pixels are stored as .npy, whose header holds the array's shape

    def shard_sizes(self, num_items: int, split: str) -> list[int]:
        sizes = super().shard_sizes(num_items, split)
        self._split_sizes[split] = sizes
        return sizes

    def shard_path(self, dataset: str, split: str, index: int, count: int) -> str:
        path = super().shard_path(dataset, split, index, count)
        sizes = self._split_sizes.get(split)
        if sizes is not None and len(sizes) == count:
            self._first[posixpath.normpath(path)] = sum(sizes[:index])
        return path

    def open(self, output_dir: str, path: str) -> ShardSink:
        if path not in self._first:
            raise WriteError(f"{path}: not a shard this webdataset writer planned, so its sample keys are unknown (a bug in prep)")
        return TarSink(self, output_dir, path, self._first[path])

    def frame(self, values: Mapping[str, object]) -> list[bytes]:
        return wds.sample_chunks(values["__key__"], values)

    def footer(self) -> bytes:
        return tar.END_OF_ARCHIVE

    def index_path(self, dataset: str, split: str) -> str:
        return f"{dataset}-{split}.wids.json"

    def metadata_paths(self, dataset: str, splits: list[str], listing) -> list[str]:
        if not self.wids_index:
            return []
        for split in splits:
            for path in (self.shard_path(dataset, split, 0, 1), self.index_path(dataset, split)):
                bad = sorted(set(path) & set(_URL_BREAKERS))
                if bad:
                    raise ConfigError(
                        f"{path!r} holds {' '.join(bad)}, which wids reads as part of a url, not of the file name: "
                        f"choose another name, split name or writer.pattern, or set writer.wids_index=false"
                    )
        return [self.index_path(dataset, split) for split in splits]

    def metadata_files(self, summary: dict, listing) -> dict[str, bytes]:
        """One wids index per split: every shard's url (relative to the index), samples and bytes, in order."""
        if not self.wids_index:
            return {}
        files = {}
        # The splits planned (those with images, as metadata_paths was given), even one whose every image was
        # skipped: its index lists no shard.
        for split in (split for split in summary["splits"] if split in self._split_sizes):
            path = self.index_path(summary["dataset"], split)
            shards = [s for s in summary["shards"] if s["split"] == split]
            folder = posixpath.dirname(path)
            index = {
                "__kind__": WIDS_KIND,
                "wids_version": 1,
                "name": f"{summary['dataset']}-{split}",
                "shardlist": [
                    {"url": _url(posixpath.relpath(s["path"], folder or ".")), "nsamples": s["num_records"], "filesize": s["bytes"]}
                    for s in shards
                ],
            }
            files[path] = (json.dumps(index, indent=2, sort_keys=True) + "\n").encode("utf-8")
        return files


def _url(relative: str) -> str:
    """A relative shard path as a wids url: "./" before a name urlparse would read as a scheme ("a:b.tar")."""
    return relative if not urlparse(relative).scheme else "./" + relative


class TarSink(ShardSink):
    """A tar shard on its way to disk: each sample gets its key, the position in the split of its record."""

    def __init__(self, writer: WebDatasetWriter, output_dir: str, path: str, first: int) -> None:
        super().__init__(writer, output_dir, path)
        self.first = first

    def write(self, values: Mapping[str, object]) -> None:
        super().write({**values, "__key__": wds.sample_key(self.first + self.num_records)})
