"""Arguments for other libraries' TFRecord readers (NVIDIA DALI, Ray Data), built from a run's summary.json:
the exact shard list, index files and feature types, so no key or type is retyped. Each library is
imported only when its arguments are built."""

from __future__ import annotations

import os

from prep.core import storage
from prep.core.errors import ConfigError
from prep.load import shard_paths
from prep.runfiles import summary as summaries
from prep.tools.random_access import frame_offsets


def _tfrecord_run(run_dir: str, split: str | None, what: str) -> dict:
    summary = summaries.load(run_dir)
    if summary["format"] != "tfrecord":
        raise ConfigError(f"{run_dir}: written with writer={summary['format']}; {what} reads TFRecord runs (writer=tfrecord)")
    if split is not None and split not in summary["splits"]:
        raise ConfigError(f"{run_dir}: no split {split!r}; this run has {sorted(summary['splits'])}")
    return summary


def dali_tfrecord_args(run_dir: str, split: str | None = None, index_dir: str | None = None) -> dict:
    """{"path", "index_path", "features"} to splat into nvidia.dali.fn.readers.tfrecord(**args), for one split
    (or the whole run with split=None).

    Uses the run's own `<shard>.idx` files (writer.dali_index=true); for a run without them, writes the index
    files under `index_dir` (a folder of yours, never the run folder), mirroring the shard paths. features
    maps every record key to a DALI FixedLenFeature of its stored type (bytes -> string, int64, float -> float32).
    """
    summary = _tfrecord_run(run_dir, split, "DALI's tfrecord reader")
    if summary.get("compression"):
        raise ConfigError(
            f"{run_dir}: shards are {summary['compression']}-compressed; DALI's tfrecord reader reads uncompressed "
            "TFRecords only (it seeks to byte offsets): rerun with writer.compression=null writer.dali_index=true"
        )
    shards = [s for s in summary["shards"] if split is None or s["split"] == split]
    paths = [storage.local(storage.join(run_dir, s["path"])) for s in shards]
    if all(s["path"] + ".idx" in s.get("extra_files", []) for s in shards):
        index_paths = [path + ".idx" for path in paths]
    elif index_dir is None:
        raise ConfigError(
            f"{run_dir}: this run has no DALI index files; pass index_dir=<a folder of yours> to have them written "
            "there, or rerun with writer.dali_index=true"
        )
    else:
        index_paths = write_dali_index(run_dir, shards, index_dir)
    return {"path": paths, "index_path": index_paths, "features": dali_features(summary)}


def dali_features(summary: dict) -> dict:
    """Record key -> nvidia.dali.tfrecord.FixedLenFeature((), type, default) for every feature of the run."""
    try:
        from nvidia.dali import tfrecord as tfrec
    except ImportError:
        raise ConfigError("DALI is not installed: pip install nvidia-dali-cuda120 (or the build for your CUDA)") from None
    types = {"bytes": (tfrec.string, ""), "int64": (tfrec.int64, -1), "float": (tfrec.float32, 0.0)}
    return {key: tfrec.FixedLenFeature((), *types[kind]) for key, kind in summary["features"].items()}


def write_dali_index(run_dir: str, shards: list[dict], index_dir: str) -> list[str]:
    """Write `<index_dir>/<shard path>.idx` ("offset size" per record, as DALI's tfrecord2idx) for each shard
    by one scan of its framing; the run folder itself is never written."""
    if storage.is_url(index_dir):
        raise ConfigError(f"index_dir={index_dir!r}: DALI reads index files from a local folder")
    index_dir = os.path.abspath(index_dir)
    run = os.path.realpath(storage.local(run_dir)) if not storage.is_url(run_dir) else None
    if run is not None and (os.path.realpath(index_dir) + os.sep).startswith(run + os.sep):
        raise ConfigError(f"index_dir={index_dir!r} is inside the run folder {run_dir}; a run is never changed after it finished: choose another folder")
    written = []
    for shard in shards:
        offsets = frame_offsets(storage.join(run_dir, shard["path"]), "tfrecord", shard["bytes"])
        lines = "".join(f"{start} {end - start}\n" for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist()))
        path = os.path.join(index_dir, shard["path"] + ".idx")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        storage.write_bytes(path, lines.encode())
        written.append(path)
    return written


def ray_tfrecord_args(run_dir: str, split: str | None = None, *, schema: bool = True) -> dict:
    """Keyword arguments for ray.data.read_tfrecords(**args): the exact shard list of a split (the run folder
    also holds summary.json, labels.csv, prep.log and index files, which read_tfrecords(run_dir) would try to
    parse) and, with schema=True, tf_schema (a tensorflow_metadata Schema of the stored types; Ray then gives
    every value as a one-element list, typed even where a block holds no value; schema=False lets Ray infer
    the types and unwrap single values). Gzip shards get arrow_open_stream_args={"compression": "gzip"}.
    """
    summary = _tfrecord_run(run_dir, split, "ray.data.read_tfrecords")
    compression = summary.get("compression")
    if compression == "zlib":
        raise ConfigError(f"{run_dir}: zlib-compressed shards; Ray (through Arrow) reads plain or gzip TFRecords: rerun with writer.compression=gzip or null")
    args: dict = {"paths": [storage.local(p) for p in shard_paths(run_dir, split, summary)]}
    if compression == "gzip":
        args["arrow_open_stream_args"] = {"compression": "gzip"}
    if schema:
        args["tf_schema"] = tf_schema(summary)
    return args


def tf_schema(summary: dict):
    """A tensorflow_metadata Schema proto naming every record key with its stored type."""
    try:
        from tensorflow_metadata.proto.v0 import schema_pb2
    except ImportError:
        raise ConfigError("a tf_schema needs the tensorflow-metadata package (pip install tensorflow-metadata), or pass schema=False") from None
    types = {"bytes": schema_pb2.FeatureType.BYTES, "int64": schema_pb2.FeatureType.INT, "float": schema_pb2.FeatureType.FLOAT}
    schema = schema_pb2.Schema()
    for key, kind in summary["features"].items():
        feature = schema.feature.add()
        feature.name = key
        feature.type = types[kind]
    return schema
