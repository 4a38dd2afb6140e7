"""Read a finished run back: a tf.data pipeline of (image, label) built from the run's own summary.json,
and a pure-Python reader of every record (TFRecord, OFRecord, ArrayRecord or WebDataset sample) as dicts. TensorFlow is imported only when used.

Also here, from the modules that hold them: RecordDataset (random access, prep/tools/random_access.py) and the
arguments of DALI's and Ray's readers (dali_tfrecord_args, ray_tfrecord_args: prep/tools/consumers.py)."""

from __future__ import annotations

import errno
import os
import stat
import struct
import zlib
from collections.abc import Iterator

from prep.core import storage
from prep.core.errors import ConfigError, InputError, PrepError
from prep.formats import arrayrecord, ofrecord, protowire, tar, tfrecord, wds
from prep.formats.protowire import WireError
from prep.runfiles import summary as summaries

PROBE_BYTES = 64 << 20  # what sniff_records reads at most (decompressed) to find a file's first record
_ZLIB_HEADERS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")  # a 32K window at each compression level


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
        except (WireError, tar.TarError) as err:
            raise type(err)(f"{path}: record {index}: {err}") from None
        yield record


def decode(payload: bytes, fmt: str) -> dict:
    """One serialized record as {key: value}, single values unwrapped from their lists."""
    if fmt == "webdataset":  # a sample's tar members: image, cls, json.<field>
        features = wds.decode_sample(payload)
    else:
        features = tfrecord.decode_example(payload) if fmt in ("tfrecord", "arrayrecord") else ofrecord.decode_record(payload)
    return {key: values[0] if len(values) == 1 else values for key, (_, values) in features.items()}


def shard_payloads(path: str, fmt: str, compression: str | None = None) -> Iterator[bytes]:
    """The serialized records of one shard file (framing, and TFRecord CRCs, checked); only PrepErrors."""
    if fmt == "arrayrecord":  # the array_record library opens the file itself (a local copy of s3://)
        with storage.local_copy(path, ".array_record") as local:
            yield from arrayrecord.read_payloads(local)
        return
    try:
        f = storage.open_read(path)
    except OSError as err:  # missing, a folder, no permission: the user's to fix, named
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
    with f:
        if fmt == "tfrecord":
            for _, payload in tfrecord.read_records(tfrecord.decompressing(f, compression), path):
                yield payload
        elif fmt == "webdataset":
            for _, payload in wds.read_samples(tfrecord.decompressing(f, compression), path):
                yield payload
        else:
            for _, payload in ofrecord.read_records(f, path):
                yield payload


def compressions_by_magic(head: bytes) -> list[str]:
    """The compressions a file's first bytes may start (gzip 1f 8b; zlib 78 01, 5e, 9c or da).

    "May": an uncompressed shard's first length field can begin with the same bytes (a 40,056-byte record
    starts 78 9c), so a caller tries the file plain first and these only when that fails.
    """
    found = []
    if head[:2] == b"\x1f\x8b":
        found.append("gzip")
    if head[:2] in _ZLIB_HEADERS:
        found.append("zlib")
    return found


class _Capped:
    """At most `limit` bytes of a stream: a probe never reads a whole large file or inflates a zip bomb."""

    def __init__(self, stream, limit: int) -> None:
        self._stream, self._left = stream, limit

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = self._stream.read(size) if size else b""
        self._left -= len(data)
        return data


def sniff_records(path: str, max_bytes: int = PROBE_BYTES) -> tuple[str, str | None] | None:
    """(format, compression) under which a file's first record reads as prep's records, else None.

    TFRecord when the first length field's CRC holds (a 1 in 2**32 chance for other bytes), read plain, then
    through each compression its magic bytes allow; a tar ("webdataset") when it starts with a ustar header
    whose checksum holds; else OFRecord (which has no CRC) when its first record
    decodes to features. Reads at most `max_bytes` (decompressed) per try, so a first OFRecord larger than
    that is not recognized; only a regular file is opened (OSError otherwise, as storage.open_read).
    """
    with storage.open_read(path) as f:
        head = f.read(16)
    compressions = [None, *compressions_by_magic(head)]

    def first(compression: str | None, read) -> bool:
        try:
            with storage.open_read(path) as f:
                return read(_Capped(tfrecord.decompressing(f, compression), max_bytes))
        except (PrepError, OSError, EOFError, zlib.error):  # not this compression, or not records
            return False

    def tfrecord_length(stream) -> bool:
        head = stream.read(12)
        return len(head) == 12 and struct.unpack("<I", head[8:])[0] == tfrecord.masked_crc(head[:8])

    def tar_header(stream) -> bool:
        return tar.is_header(stream.read(tar.BLOCK))

    def ofrecord_features(stream) -> bool:
        head = stream.read(8)
        size = struct.unpack("<q", head)[0] if len(head) == 8 else 0
        if not 0 < size <= max_bytes - 8:  # none, or more than the probe may read: not read at all
            return False
        payload = protowire.read_exact(stream, size)
        return len(payload) == size and bool(ofrecord.decode_record(payload))

    for fmt, read in (("tfrecord", tfrecord_length), ("webdataset", tar_header), ("ofrecord", ofrecord_features)):
        for compression in compressions:
            if first(compression, read):
                return fmt, compression
    return None


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
        raise ConfigError(f"{run_dir}: written with writer={summary['format']}; use prep.load.records() to read it")
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
    if not storage.is_url(run_dir):
        for path in files:  # TensorFlow opens files itself: a FIFO would block it, so only regular files go in
            _check_regular(path)
    compression = {"gzip": "GZIP", "zlib": "ZLIB"}.get(summary.get("compression") or "", "")
    if storage.is_url(run_dir):
        # TensorFlow no longer reads s3:// itself: stream the records through fsspec instead.
        dataset = tf.data.Dataset.from_generator(
            lambda: payloads(run_dir, split, summary), output_signature=tf.TensorSpec((), tf.string)
        )
    else:
        dataset = tf.data.TFRecordDataset(files, compression_type=compression)
    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _check_regular(path: str) -> None:
    """InputError unless `path` is a regular file (stat, so a FIFO is not opened)."""
    try:
        mode = os.stat(storage.local(path)).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
                          "is a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)")
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from None


# Re-exported lazily (PEP 562): prep.load.RecordDataset works, and reading records sequentially imports no numpy.
_ELSEWHERE = {
    "RecordDataset": "prep.tools.random_access",
    "decode_image": "prep.tools.random_access",
    "dali_tfrecord_args": "prep.tools.consumers",
    "ray_tfrecord_args": "prep.tools.consumers",
}


def __getattr__(name: str):
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
