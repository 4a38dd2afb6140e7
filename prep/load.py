"""Read a finished run back: a tf.data pipeline of (image, label) built from the run's own summary.json,
and a pure-Python reader of every record (TFRecord or OFRecord) as dicts. TensorFlow is imported only when used."""

from __future__ import annotations

from collections.abc import Iterator

from prep import storage
from prep import summary as summaries
from prep.errors import ConfigError, InputError
from prep.formats import ofrecord, tfrecord
from prep.formats.protowire import WireError


def shard_paths(run_dir: str, split: str | None, summary: dict | None = None) -> list[str]:
    summary = summary or summaries.load(run_dir)
    if split is not None and split not in summary["splits"]:
        raise ConfigError(f"{run_dir}: no split {split!r}; this run has {sorted(summary['splits'])}")
    return [storage.join(run_dir, s["path"]) for s in summary["shards"] if split is None or s["split"] == split]


def _key(summary: dict, field: str) -> str | None:
    return next((key for key, f in summary.get("feature_fields", {}).items() if f == field), None)


def records(run_dir: str, split: str | None = None) -> Iterator[dict]:
    """Every record of a run (or of one split) in order, as {key: value or list of values}, numpy-free.

    Works for TFRecord (CRCs checked) and OFRecord; single values are unwrapped from their lists.
    """
    summary = summaries.load(run_dir)
    for path in shard_paths(run_dir, split, summary):
        yield from shard_records(path, summary["format"], summary.get("compression"))


def shard_records(path: str, fmt: str, compression: str | None = None) -> Iterator[dict]:
    """The records of one shard file, decoded; a record that does not parse is a WireError naming file and record."""
    for index, payload in enumerate(shard_payloads(path, fmt, compression)):
        try:
            record = decode(payload, fmt)
        except WireError as err:
            raise WireError(f"{path}: record {index}: {err}") from None
        yield record


def decode(payload: bytes, fmt: str) -> dict:
    """One serialized record as {key: value}, single values unwrapped from their lists."""
    features = tfrecord.decode_example(payload) if fmt == "tfrecord" else ofrecord.decode_record(payload)
    return {key: values[0] if len(values) == 1 else values for key, (_, values) in features.items()}


def shard_payloads(path: str, fmt: str, compression: str | None = None) -> Iterator[bytes]:
    """The serialized records of one shard file (framing, and TFRecord CRCs, checked); only PrepErrors."""
    try:
        f = storage.open_read(path)
    except OSError as err:  # missing, a folder, no permission: the user's to fix, named
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
    with f:
        if fmt == "tfrecord":
            for _, payload in tfrecord.read_records(tfrecord.decompressing(f, compression), path):
                yield payload
        else:
            for _, payload in ofrecord.read_records(f, path):
                yield payload


def payloads(run_dir: str, split: str | None = None, summary: dict | None = None) -> Iterator[bytes]:
    """The serialized records of a run, shard after shard."""
    summary = summary or summaries.load(run_dir)
    for path in shard_paths(run_dir, split, summary):
        yield from shard_payloads(path, summary["format"], summary.get("compression"))


def tf_dataset(run_dir: str, split: str = "train", *, decode: bool = True, channels: int = 0):
    """A tf.data.Dataset of (image, label) for one split of a TFRecord run, parsed in parallel and prefetched.

    decode=False yields the encoded bytes instead of the image tensor; channels as tf.io.decode_image's.
    """
    import tensorflow as tf

    summary = summaries.load(run_dir)
    if summary["format"] != "tfrecord":
        raise ConfigError(f"{run_dir}: a {summary['format']} run; use prep.load.records() to read it")
    types = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}
    spec = {key: tf.io.FixedLenFeature([], types[kind]) for key, kind in summary["features"].items()}
    image_key, label_key = _key(summary, "encoded"), _key(summary, "label")
    raw = set(summary.get("image_formats", {})) == {"raw"}
    shape_keys = [_key(summary, f) for f in ("height", "width", "channels")]
    if raw and None in shape_keys:
        raise ConfigError(f"{run_dir}: raw pixels need height, width and channels features to be reshaped")

    def parse(record):
        example = tf.io.parse_single_example(record, spec)
        image = example[image_key]
        if decode and raw:
            image = tf.reshape(tf.io.decode_raw(image, tf.uint8), tf.stack([tf.cast(example[k], tf.int32) for k in shape_keys]))
        elif decode:
            image = tf.io.decode_image(image, channels=channels, expand_animations=False)
        label = example[label_key] if label_key else tf.constant(-1, tf.int64)
        return image, label

    files = shard_paths(run_dir, split, summary)
    compression = {"gzip": "GZIP", "zlib": "ZLIB"}.get(summary.get("compression") or "", "")
    if storage.is_url(run_dir):
        # TensorFlow no longer reads s3:// itself: stream the records through fsspec instead.
        dataset = tf.data.Dataset.from_generator(
            lambda: payloads(run_dir, split, summary), output_signature=tf.TensorSpec((), tf.string)
        )
    else:
        dataset = tf.data.TFRecordDataset(files, compression_type=compression)
    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
