"""Arguments for other libraries' TFRecord readers (NVIDIA DALI, Ray Data), built from a run's summary.json:
the exact shard list, index files and feature types, so no key or type is retyped. Each library is
imported only when its arguments are built."""

from __future__ import annotations

import os

from prep.core import storage
from prep.core.errors import ConfigError
from prep.load import check_in_run, load_summary
from prep.tools.random_access import frame_offsets


def _tfrecord_run(run_dir: str, split: str | None, what: str) -> dict:
    summary = load_summary(run_dir)
    if summary["format"] != "tfrecord":
        raise ConfigError(f"{run_dir}: written with writer={summary['format']}; {what} reads TFRecord runs (writer=tfrecord)")
    if split is not None and split not in summary["splits"]:
        raise ConfigError(f"{run_dir}: no split {split!r}; this run has {sorted(summary['splits'])}")
    return summary


def dali_tfrecord_args(run_dir: str, split: str | None = None, index_dir: str | None = None) -> dict:
    """{"path", "index_path", "features"} to splat into nvidia.dali.fn.readers.tfrecord(**args), for one split
    (or the whole run with split=None).

    Uses the run's own `<shard>.idx` files (writer.dali_index=true); for a run without them, writes the index
    files under `index_dir` (a folder of yours, neither the run folder nor inside it nor holding it), mirroring
    the shard paths. features maps every record key to a DALI FixedLenFeature of its stored type (bytes ->
    string, int64, float -> float32). DALI opens the files itself: each shard and index file is checked first
    to be a regular file of the run folder, reached without a symbolic link.
    """
    summary = _tfrecord_run(run_dir, split, "DALI's tfrecord reader")
    if summary.get("compression"):
        raise ConfigError(
            f"{run_dir}: shards are {summary['compression']}-compressed; DALI's tfrecord reader reads uncompressed "
            "TFRecords only (it seeks to byte offsets): rerun with writer.compression=null writer.dali_index=true"
        )
    shards = [s for s in summary["shards"] if split is None or s["split"] == split]
    features = dali_features(summary)  # DALI is there before anything is checked or written
    paths = [storage.local(check_in_run(run_dir, s["path"])) for s in shards]
    if all(s["path"] + ".idx" in s.get("extra_files", []) for s in shards):
        index_paths = [storage.local(check_in_run(run_dir, s["path"] + ".idx")) for s in shards]
    elif index_dir is None:
        raise ConfigError(
            f"{run_dir}: this run has no DALI index files; pass index_dir=<a folder of yours> to have them written "
            "there, or rerun with writer.dali_index=true"
        )
    else:
        index_paths = write_dali_index(run_dir, shards, index_dir)
    return {"path": paths, "index_path": index_paths, "features": features}


def dali_features(summary: dict) -> dict:
    """Record key -> nvidia.dali.tfrecord.FixedLenFeature((), type, default) for every feature of the run."""
    try:
        from nvidia.dali import tfrecord as tfrec
    except ImportError:
        raise ConfigError("DALI is not installed: pip install nvidia-dali-cuda120 (or the build for your CUDA)") from None
    types = {"bytes": (tfrec.string, ""), "int64": (tfrec.int64, -1), "float": (tfrec.float32, 0.0)}
    return {key: tfrec.FixedLenFeature((), *types[kind]) for key, kind in summary["features"].items()}


def check_index_dir(run_dir: str, index_dir: str) -> str:
    """index_dir as an absolute path; ConfigError when it is the run folder, lies inside it or holds it (by real
    paths: the index files mirror the shard paths, so a folder holding the run could write into it)."""
    if storage.is_url(index_dir):
        raise ConfigError(f"index_dir={index_dir!r}: DALI reads index files from a local folder")
    index_dir = os.path.abspath(index_dir)
    if storage.is_url(run_dir):
        return index_dir
    run, real = os.path.realpath(storage.local(run_dir)), os.path.realpath(index_dir)
    if real == run:
        where = "is the run folder"
    elif real.startswith(run.rstrip(os.sep) + os.sep):
        where = "is inside the run folder"
    elif run.startswith(real.rstrip(os.sep) + os.sep):
        where = "holds the run folder"
    else:
        return index_dir
    raise ConfigError(f"index_dir={index_dir!r} {where} {run_dir}; a run is never changed after it finished: choose another folder")


def write_dali_index(run_dir: str, shards: list[dict], index_dir: str) -> list[str]:
    """Write `<index_dir>/<shard path>.idx` ("offset size" per record, as DALI's tfrecord2idx) for each shard
    by one scan of its framing; the run folder itself is never written. Every shard is read (and index_dir
    checked) before the first index file is written: a run that cannot be indexed leaves nothing behind."""
    index_dir = check_index_dir(run_dir, index_dir)
    texts = []
    for shard in shards:
        offsets = frame_offsets(storage.join(run_dir, shard["path"]), "tfrecord", shard["bytes"], run_dir=run_dir)
        lines = "".join(f"{start} {end - start}\n" for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist()))
        texts.append((os.path.join(index_dir, shard["path"] + ".idx"), lines.encode()))
    for path, data in texts:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        storage.write_bytes(path, data)
    return [path for path, _ in texts]


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
    shards = [s for s in summary["shards"] if split is None or s["split"] == split]
    args: dict = {"paths": [storage.local(check_in_run(run_dir, s["path"])) for s in shards]}  # Ray opens them by name
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
