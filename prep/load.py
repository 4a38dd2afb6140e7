"""Read a finished run back: a tf.data pipeline of (image, label) built from the run's own summary.json,
and a pure-Python reader of every record (TFRecord, OFRecord, ArrayRecord or WebDataset sample) as dicts. TensorFlow is imported only when used.

Every file of a run folder is opened here (open_in_run, load_summary), never through a symbolic link: the
readers and tools all read a run through these helpers.

Also here, from the modules that hold them: RecordDataset (random access, prep/tools/random_access.py) and the
arguments of DALI's and Ray's readers (dali_tfrecord_args, ray_tfrecord_args: prep/tools/consumers.py)."""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prep.core import nofollow, storage
from prep.core.errors import ConfigError, InputError, PrepError
from prep.formats import arrayrecord, ofrecord, protowire, tar, tfrecord, wds
from prep.formats.protowire import WireError
from prep.runfiles import summary as summaries

PROBE_BYTES = 64 << 20  # what sniff_records reads at most (decompressed) to find a file's first record
_ZLIB_HEADERS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")  # a 32K window at each compression level


# ------------------------------------------------------------------------------------------ a run folder's files
#
# A run folder may come from someone else (mailed, downloaded, shared), so any file in it may be a symbolic link
# to a file of the reader's own machine. Every file a reader opens from a run folder (summary.json, shards, DALI
# index files, metadata files, .hydra/config.yaml, the lock) is opened here: the run folder as the user named it
# (a link there is the user's own choice), every folder below it and the file itself without following a link
# (O_NOFOLLOW, each part relative to its parent's descriptor), and only a regular file is returned. Object
# storage (s3://, ...) has no links: its objects go through prep.core.storage.

LINK = f"{nofollow.LINK}: prep reads only files inside the run folder"
LinkError = nofollow.LinkError


def read_problem(err: OSError) -> str:
    """What an OSError from open_in_run says, for "<path>: <problem>" (a link is not "cannot read")."""
    if isinstance(err, LinkError):
        return err.strerror
    return f"cannot read: {err.strerror or err}"


def run_parts(rel: str) -> list[str]:
    """The names of a relative path inside a run folder; OSError(EINVAL) for one that could leave it."""
    parts = rel.split("/")
    if rel.startswith("/") or "\0" in rel or any(p in ("", ".", "..") for p in parts):
        raise OSError(errno.EINVAL, "not a plain path inside the run folder", rel)
    return parts


def open_fd_in_run(run_dir: str, rel: str, flags: int = nofollow.READ) -> int:
    """A descriptor of the regular file `rel` ("/"-separated, as summary.json lists paths) of the local run folder
    run_dir, reached without following a link below it (prep.core.nofollow.open_file)."""
    return nofollow.open_file(storage.local(run_dir), run_parts(rel), flags, why=": prep reads only files inside the run folder")


def open_in_run(run_dir: str, rel: str):
    """The file `rel` of the run folder run_dir as a binary file object (seekable), never through a link (see
    open_fd_in_run); an object of a run in object storage through prep.core.storage."""
    if storage.is_url(run_dir):
        return storage.open_read(storage.join(run_dir, rel))
    return os.fdopen(open_fd_in_run(run_dir, rel), "rb")


def read_in_run(run_dir: str, rel: str, limit: int = storage.MAX_READ_BYTES) -> bytes:
    """A whole file of the run folder (as open_in_run), refused (OSError EFBIG) when it is larger than `limit`."""
    if storage.is_url(run_dir):
        return storage.read_bytes(storage.join(run_dir, rel), limit)
    with open_in_run(run_dir, rel) as f:
        if os.fstat(f.fileno()).st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit:,} bytes", storage.join(run_dir, rel))
        return f.read(limit + 1)


def check_in_run(run_dir: str, rel: str) -> str:
    """The path of a run folder's file for a library that opens files by name itself (TensorFlow, DALI, Ray),
    checked first as open_in_run opens it; InputError naming the file otherwise."""
    path = storage.join(run_dir, rel)
    if not storage.is_url(run_dir):
        try:
            os.close(open_fd_in_run(run_dir, rel))
        except OSError as err:
            raise InputError(f"{path}: {read_problem(err)}") from None
    return path


@contextmanager
def name_in_run(run_dir: str, rel: str):
    """A name that leads to exactly the run folder's file `rel`, opened as open_in_run opens it, for a library
    that opens files by name (array_record): /proc/self/fd/N while the block runs, so no link planted (or
    swapped in) on the way is followed; a local copy of an object in object storage."""
    path = storage.join(run_dir, rel)
    if storage.is_url(run_dir):
        with storage.local_copy(path, os.path.splitext(rel)[1]) as local:
            yield local
        return
    fd = open_fd_in_run(run_dir, rel)
    try:
        name = f"/proc/self/fd/{fd}"
        yield name if os.path.exists(name) else storage.local(path)
    finally:
        os.close(fd)


def run_relative(run_dir: str, path: str) -> str:
    """`path` (storage.join(run_dir, rel)) as the relative path rel."""
    if storage.is_url(run_dir):
        return path[len(run_dir.rstrip("/")) + 1 :]
    return os.path.relpath(storage.local(path), storage.local(run_dir)).replace(os.sep, "/")


def load_summary(run_dir: str) -> dict:
    """summary.json of a finished run, never read through a link, checked by prep.runfiles.summary.validate;
    one PrepError naming the file and what is wrong otherwise."""
    return summaries.load(run_dir)


# ------------------------------------------------------------------------------------------ record frames

_HEADER = {"tfrecord": 12, "ofrecord": 8}  # bytes before a record's payload: length (+ its CRC)
_FOOTER = {"tfrecord": 4, "ofrecord": 0}  # bytes after it: the payload's CRC


def _open_shard(path: str, run_dir: str | None):
    """A shard for reading: a file of the run folder run_dir, never through a link (prep.load.open_in_run), or
    the file the user named; InputError naming it otherwise."""
    try:
        return open_in_run(run_dir, run_relative(run_dir, path)) if run_dir is not None else storage.open_read(path)
    except OSError as err:
        raise InputError(f"{path}: {read_problem(err)}") from None


def frame_offsets(path: str, fmt: str, size: int | None = None, *, run_dir: str | None = None):
    """Where each record of an uncompressed TFRecord or OFRecord shard starts, and the file's end (n + 1
    int64s): one scan of the length fields (TFRecord's checked by their CRC), no payload read. run_dir: path
    is a file of that run folder (never read through a link)."""
    import numpy as np  # only here: reading records in order imports no numpy

    header = _HEADER[fmt]
    extra = header + _FOOTER[fmt]
    starts: list[int] = []
    with _open_shard(path, run_dir) as f:
        end = _size(f)
        if size is not None and end != size:
            raise InputError(f"{path}: is {end} bytes, summary.json says {size}; check the run with prep-verify")
        offset = 0
        while offset < end:
            try:
                head = _pread(f, header, offset)
            except OSError as err:
                _damaged(path, len(starts), offset, f"cannot read: {err.strerror or err}")
            if len(head) < header:
                _damaged(path, len(starts), offset, "truncated length header")
            if fmt == "tfrecord":
                (length,) = struct.unpack("<Q", head[:8])
                if struct.unpack("<I", head[8:])[0] != tfrecord.masked_crc(head[:8]):
                    _damaged(path, len(starts), offset, "length CRC mismatch")
            else:
                (length,) = struct.unpack("<q", head)
                if length < 0:
                    _damaged(path, len(starts), offset, f"negative length {length}")
            starts.append(offset)
            offset += extra + length
        if offset != end:
            _damaged(path, len(starts) - 1, starts[-1] if starts else 0, f"runs past the end of the file ({offset} > {end} bytes)")
    starts.append(end)
    return np.array(starts, dtype=np.int64)


def _damaged(path: str, index: int, offset: int, problem: str):
    raise InputError(f"{path}: record {index} at byte {offset}: {problem}; check the run with prep-verify")


def _size(f) -> int:
    if hasattr(f, "fileno"):
        try:
            return os.fstat(f.fileno()).st_size
        except (OSError, ValueError):  # an fsspec file may have no descriptor
            pass
    return f.size


def _pread(f, size: int, offset: int) -> bytes:
    """`size` bytes at `offset`: one os.pread on a local file (no shared position, so safe across threads),
    a seek and read on a remote one."""
    try:
        fd = f.fileno()
    except (AttributeError, OSError, ValueError):  # an fsspec file has no descriptor
        f.seek(offset)
        return f.read(size)
    return os.pread(fd, size, offset)


def shard_paths(run_dir: str, split: str | None, summary: dict | None = None) -> list[str]:
    summary = summary or load_summary(run_dir)
    if split is not None and split not in summary["splits"]:
        raise ConfigError(f"{run_dir}: no split {split!r}; this run has {sorted(summary['splits'])}")
    # Libraries open these by name (TensorFlow, Grain, Ray): each is checked first to be a regular file of the run
    # folder, reached without a link.
    return [check_in_run(run_dir, s["path"]) for s in summary["shards"] if split is None or s["split"] == split]


def check_frames(run_dir: str, summary: dict, split: str | None) -> None:
    """Before TensorFlow reads a run's TFRecord shards itself: every record's frame (length, its CRC, the file's
    size) is as the format and summary.json say, one scan of the length fields. TensorFlow's reader crashes the
    process (SIGSEGV) on a length of 2**40 with a valid CRC; a crafted run folder gets one InputError instead.
    Compressed shards are checked by TensorFlow's own stream reader, record by record."""
    if summary["format"] != "tfrecord" or summary.get("compression"):
        return
    for shard in summary["shards"]:
        if split is None or shard["split"] == split:
            frame_offsets(storage.join(run_dir, shard["path"]), "tfrecord", shard["bytes"], run_dir=run_dir)


def _key(summary: dict, field: str) -> str | None:
    return next((key for key, f in summary.get("feature_fields", {}).items() if f == field), None)


def records(run_dir: str, split: str | None = None) -> Iterator[dict]:
    """Every record of a run (or of one split) in order, as {key: value or list of values}, numpy-free.

    Works for TFRecord (CRCs checked) and OFRecord; single values are unwrapped from their lists.
    """
    summary = load_summary(run_dir)
    for path in shard_paths(run_dir, split, summary):
        yield from shard_records(path, summary["format"], summary.get("compression"), run_dir=run_dir)


def shard_records(path: str, fmt: str, compression: str | None = None, *, run_dir: str | None = None) -> Iterator[dict]:
    """The records of one shard file, decoded; a record that does not parse is a WireError naming file and record.
    run_dir: path is a file of that run folder (storage.join(run_dir, rel)), read without following a link."""
    for index, payload in enumerate(shard_payloads(path, fmt, compression, run_dir=run_dir)):
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


def shard_payloads(path: str, fmt: str, compression: str | None = None, *, run_dir: str | None = None) -> Iterator[bytes]:
    """The serialized records of one shard file (framing, and TFRecord CRCs, checked); only PrepErrors.

    run_dir: path is a file of that run folder, opened as open_in_run opens it (never through a link); without
    it, path is a file the user named, opened as named."""
    if fmt == "arrayrecord":  # the array_record library opens the file itself (a local copy of s3://)
        yield from arrayrecord_payloads(path, run_dir)
        return
    try:
        f = open_in_run(run_dir, run_relative(run_dir, path)) if run_dir is not None else storage.open_read(path)
    except OSError as err:  # missing, a folder, a link, no permission: the user's to fix, named
        raise InputError(f"{path}: {read_problem(err)}") from None
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


@contextmanager
def arrayrecord_name(path: str, run_dir: str | None = None):
    """A local name of an ArrayRecord shard for the array_record library: the file reached as open_in_run
    reaches it (run_dir given), or as the user named it; InputError naming the file when it cannot be opened."""
    opened = name_in_run(run_dir, run_relative(run_dir, path)) if run_dir is not None else storage.local_copy(path, ".array_record")
    with ExitStack() as stack:
        try:
            name = stack.enter_context(opened)
        except OSError as err:
            raise InputError(f"{path}: {read_problem(err)}") from None
        yield name


def arrayrecord_payloads(path: str, run_dir: str | None = None) -> Iterator[bytes]:
    """Every record of an ArrayRecord shard in order; a damaged file is one RecordError naming `path`."""
    with arrayrecord_name(path, run_dir) as name:
        try:
            yield from arrayrecord.read_payloads(name)
        except arrayrecord.RecordError as err:
            raise arrayrecord.RecordError(str(err).replace(name, path)) from None
        except RuntimeError as err:  # the library's own error for a damaged chunk, from outside read_many
            raise arrayrecord.RecordError(f"{path}: {err}") from None


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


def sniff_records(path: str, max_bytes: int = PROBE_BYTES, *, run_dir: str | None = None) -> tuple[str, str | None] | None:
    """(format, compression) under which a file's first record reads as prep's records, else None.

    TFRecord when the first length field's CRC holds (a 1 in 2**32 chance for other bytes), read plain, then
    through each compression its magic bytes allow; a tar ("webdataset") when it starts with a ustar header
    whose checksum holds; else OFRecord (which has no CRC) when its first record
    decodes to features. Reads at most `max_bytes` (decompressed) per try, so a first OFRecord larger than
    that is not recognized; only a regular file is opened (OSError otherwise, as storage.open_read); with
    run_dir, path is a file of that run folder, never read through a link (as open_in_run).
    """

    def open_read():
        return open_in_run(run_dir, run_relative(run_dir, path)) if run_dir is not None else storage.open_read(path)

    with open_read() as f:
        head = f.read(16)
    compressions = [None, *compressions_by_magic(head)]

    def first(compression: str | None, read) -> bool:
        try:
            with open_read() as f:
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
    summary = summary or load_summary(run_dir)
    for path in shard_paths(run_dir, split, summary):
        yield from shard_payloads(path, summary["format"], summary.get("compression"), run_dir=run_dir)


def tf_dataset(run_dir: str, split: str = "train", *, decode: bool = True, channels: int = 0):
    """A tf.data.Dataset of (image, label) for one split of a TFRecord run, parsed in parallel and prefetched.

    decode=False yields the encoded bytes instead of the image tensor; channels as tf.io.decode_image's.
    """
    import tensorflow as tf

    summary = load_summary(run_dir)
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

    # TensorFlow opens files itself: each one is checked first to be a regular file of the run folder, reached
    # without a link (a FIFO would block it; a link would read a file outside the run)
    files = shard_paths(run_dir, split, summary)
    compression = {"gzip": "GZIP", "zlib": "ZLIB"}.get(summary.get("compression") or "", "")
    check_frames(run_dir, summary, split)
    if storage.is_url(run_dir):
        # TensorFlow no longer reads s3:// itself: stream the records through fsspec instead.
        dataset = tf.data.Dataset.from_generator(
            lambda: payloads(run_dir, split, summary), output_signature=tf.TensorSpec((), tf.string)
        )
    else:
        dataset = tf.data.TFRecordDataset(files, compression_type=compression)
    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


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
