"""Random access to a finished run: RecordDataset (len, ds[i]) over one split, for PyTorch, Grain and
multiprocessing, from the DALI index files or one scan of each shard's framing; no TensorFlow, torch or JAX.

Each shard's record offsets are one numpy array (record j spans offsets[j]..offsets[j+1]), so a record is
one positioned read (os.pread) of its whole frame, CRCs checked. Shard files are opened on first use and
kept open in each process; pickling carries the run path, split and offsets, never an open file.
"""

from __future__ import annotations

import bisect
import errno
import operator
import os
import struct

import numpy as np

from prep.core import storage
from prep.core.errors import ConfigError, EncodeError, InputError, PrepError
from prep.encoders.pixels import DEFAULT_MAX_PIXELS
from prep.formats import arrayrecord, ofrecord, tfrecord
from prep.formats.images import check_complete, read_header
from prep.formats.protowire import WireError
from prep.load import _FOOTER, _HEADER, _open_shard, _pread, _size, frame_offsets, load_summary, name_in_run, read_in_run, read_problem, run_relative

FORMATS = ("tfrecord", "ofrecord", "arrayrecord")
_INHERITED: list = []  # readers a forked child got from its parent: never used, closed or destroyed there


def check_format(run_dir: str, summary: dict, split: str | None, what: str) -> None:
    """ConfigError unless `what` can index this run: a known record format, uncompressed."""
    fmt = summary["format"]
    if fmt == "webdataset":
        index = [m["path"] for m in summary.get("metadata_files", []) if m["path"].endswith(".wids.json")]
        index = [p for p in index if split is None or f"-{split}." in p] or index or ["<dataset>-<split>.wids.json"]
        raise ConfigError(
            f"{run_dir}: a webdataset run (tar shards); {what} reads {', '.join(FORMATS)} runs. For random access use "
            f"wids: wids.ShardListDataset({storage.join(run_dir, index[0])!r})"
        )
    if fmt not in FORMATS:
        raise ConfigError(f"{run_dir}: format {fmt!r}; {what} reads {', '.join(FORMATS)} runs")
    if summary.get("compression"):
        raise ConfigError(
            f"{run_dir}: shards are {summary['compression']}-compressed, and random access needs the byte offset of "
            f"each record: rerun with writer.compression=null, or read the run in order with "
            f"prep.load.records(run_dir, split) or prep.load.tf_dataset(run_dir, split)"
        )








INDEX_LINE = 42  # the longest line of a DALI index: two int64s in decimal, a space and a newline


def read_index(path: str, shard_bytes: int, num_records: int, *, run_dir: str | None = None) -> np.ndarray:
    """A DALI index file ("offset size" per record) as frame offsets plus the shard's end, checked to tile
    the shard exactly (so it says what the framing would), every record at least a TFRecord frame long.

    shard_bytes must be the shard file's real size (checked by the caller), so no offset or size read here
    points past the file. run_dir: path is a file of that run folder (never read through a link)."""
    limit = min(max(1, num_records) * INDEX_LINE, storage.MAX_READ_BYTES)  # num_records is summary.json's word
    try:
        data = read_in_run(run_dir, run_relative(run_dir, path), limit) if run_dir is not None else storage.read_bytes(path, limit)
    except OSError as err:
        if err.errno == errno.EFBIG:
            raise InputError(f"{path}: larger than an index of {num_records} records can be; check the run with prep-verify") from None
        raise InputError(f"{path}: {read_problem(err)}") from None
    try:
        numbers = np.array(data.split(), dtype=np.int64).reshape(-1, 2)
    except (ValueError, OverflowError):
        raise InputError(f"{path}: not a DALI index (lines of 'offset size'); check the run with prep-verify") from None
    offsets = np.append(numbers[:, 0], shard_bytes)
    if (
        len(numbers) != num_records or offsets[0] != 0 or not np.array_equal(np.diff(offsets), numbers[:, 1])
        or (numbers[:, 1] < _HEADER["tfrecord"] + _FOOTER["tfrecord"]).any()
    ):
        raise InputError(f"{path}: does not match its shard ({len(numbers)} lines for {num_records} records); check the run with prep-verify")
    return offsets






class RecordDataset:
    """A map-style dataset over one split of a finished run: len(ds), ds[i] -> {record key: value}.

    Records come in the run's order (shard order, then record order). The image is decoded to a uint8 numpy
    array HxWxC in RGB(A) order (gray HxWx1, as tf.io.decode_image gives; raw pixels reshaped from the
    height/width/channels features), or left as the encoded bytes with decode=False; integers are int,
    floats float, other bytes str (bytes when not UTF-8), lists of several values lists. No image larger
    than max_pixels (its header says) is decoded. Lossless images give exactly tf.io.decode_image's pixels;
    JPEG values may differ from TensorFlow's by a few levels (its default IDCT is a faster one).

    Reads tfrecord (uncompressed), ofrecord and arrayrecord runs. Works in torch.utils.data.DataLoader
    workers, as a Grain RandomAccessDataSource, and in spawned processes: it pickles as paths and offsets.
    """

    def __init__(self, run_dir: str, split: str, *, decode: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        summary = load_summary(run_dir)
        if split not in summary["splits"]:
            raise ConfigError(f"{run_dir}: no split {split!r}; this run has {sorted(summary['splits'])}")
        check_format(run_dir, summary, split, "RecordDataset")
        if max_pixels < 1:
            raise ConfigError(f"max_pixels={max_pixels}: must be a positive number of pixels")
        self.run_dir, self.split, self.decode, self.max_pixels = run_dir, split, decode, max_pixels
        self.format = summary["format"]
        fields = summary["feature_fields"]
        key_of = {field: key for key, field in fields.items()}
        self.image_key = key_of.get("encoded")
        self.label_key = key_of.get("label")
        self.raw = set(summary.get("image_formats") or {}) == {"raw"}
        self._shape_keys = tuple(key_of.get(f) for f in ("height", "width", "channels"))
        if decode and self.raw and None in self._shape_keys:
            raise ConfigError(f"{run_dir}: raw pixels need height, width and channels features to be reshaped (or pass decode=False)")
        shards = [s for s in summary["shards"] if s["split"] == split]
        self.paths = [storage.join(run_dir, s["path"]) for s in shards]
        counts = self._counts = [s["num_records"] for s in shards]
        self._firsts = [0]  # the global index of each shard's first record
        for count in counts:
            self._firsts.append(self._firsts[-1] + count)
        self._offsets: list[np.ndarray] | None = None
        if self.format != "arrayrecord":
            self._offsets = [self._shard_offsets(path, shard) for path, shard in zip(self.paths, shards)]
            for path, offsets, count in zip(self.paths, self._offsets, counts):
                if len(offsets) - 1 != count:
                    raise InputError(f"{path}: holds {len(offsets) - 1} records, summary.json says {count}; check the run with prep-verify")
        self._files: dict[int, object] = {}
        self._pid = os.getpid()

    def _shard_offsets(self, path: str, shard: dict) -> np.ndarray:
        index = shard["path"] + ".idx"
        if self.format == "tfrecord" and index in shard.get("extra_files", []):
            with _open_shard(path, self.run_dir) as f:  # the index's offsets are trusted only within the real file
                size = _size(f)
            if size != shard["bytes"]:
                raise InputError(f"{path}: is {size} bytes, summary.json says {shard['bytes']}; check the run with prep-verify")
            return read_index(storage.join(self.run_dir, index), size, shard["num_records"], run_dir=self.run_dir)
        return frame_offsets(path, self.format, shard["bytes"], run_dir=self.run_dir)

    def __len__(self) -> int:
        return self._firsts[-1]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        n = self._firsts[-1]
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"record {index} of a split of {n}")
        shard = bisect.bisect_right(self._firsts, i) - 1
        payload = self._payload(shard, i - self._firsts[shard])
        try:
            features = tfrecord.decode_example(payload) if self.format != "ofrecord" else ofrecord.decode_record(payload)
        except WireError as err:
            raise WireError(f"{self.paths[shard]}: record {i - self._firsts[shard]}: {err}") from None
        return self._values(features)

    def _file(self, shard: int):
        if self._pid != os.getpid():  # a forked child: the parent's readers are not ours to share (ArrayRecord's threads)
            # ... nor to destroy: an ArrayRecord reader's destructor in the child waits on the parent's threads,
            # which a fork does not copy (a segfault in DataLoader workers). They are kept, unused, for good.
            _INHERITED.append(self._files)
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(shard)
        if f is None:
            path = self.paths[shard]
            f = self._open_arrayrecord(shard) if self.format == "arrayrecord" else _open_shard(path, self.run_dir)
            self._files[shard] = f
        return f

    def _open_arrayrecord(self, shard: int):
        """The library opens the file by name: by the /proc/self/fd name of the file reached without links."""
        path = self.paths[shard]
        try:
            with name_in_run(self.run_dir, run_relative(self.run_dir, path)) as name:
                try:
                    reader = arrayrecord.Reader(name, random_access=True)
                except PrepError as err:
                    raise type(err)(str(err).replace(name, path)) from None
        except OSError as err:
            raise InputError(f"{path}: {read_problem(err)}") from None
        reader.path = path
        if len(reader) != self._counts[shard]:
            reader.close()
            raise InputError(f"{path}: holds {len(reader)} records, summary.json says {self._counts[shard]}; check the run with prep-verify")
        return reader

    def _payload(self, shard: int, j: int) -> bytes:
        f = self._file(shard)
        if self._offsets is None:
            try:
                return f.read(j)
            except (RuntimeError, MemoryError) as err:  # the array_record library's error for a damaged chunk
                raise InputError(f"{self.paths[shard]}: record {j}: cannot read ({str(err) or type(err).__name__}); check the run with prep-verify") from None
        offsets = self._offsets[shard]
        start, end = int(offsets[j]), int(offsets[j + 1])
        where = f"{self.paths[shard]}: record {j} at byte {start}"
        try:
            size = _size(f)  # now: a file cut short since the offsets were read is not read past its end
        except OSError as err:
            raise InputError(f"{where}: cannot read: {err.strerror or err}") from None
        header, footer = _HEADER[self.format], _FOOTER[self.format]
        if not 0 <= start <= end - header - footer or end > size:
            raise InputError(f"{where}: a frame of {end - start} bytes does not fit the file of {size} bytes; check the run with prep-verify")
        try:
            frame = _pread(f, end - start, start)
        except OSError as err:
            raise InputError(f"{where}: cannot read: {err.strerror or err}") from None
        if len(frame) != end - start:
            raise InputError(f"{where}: truncated ({len(frame)} of {end - start} bytes); check the run with prep-verify")
        length = struct.unpack_from("<Q" if self.format == "tfrecord" else "<q", frame)[0]
        if length != end - start - header - footer:
            raise InputError(f"{where}: its length field says {length} bytes, its frame holds {end - start - header - footer}; check the run with prep-verify")
        if self.format == "ofrecord":
            return frame[8:]
        if struct.unpack_from("<I", frame, 8)[0] != tfrecord.masked_crc(frame[:8]):
            raise InputError(f"{where}: length CRC mismatch; check the run with prep-verify")
        payload = frame[12:-4]
        if struct.unpack_from("<I", frame, len(frame) - 4)[0] != tfrecord.masked_crc(payload):
            raise InputError(f"{where}: payload CRC mismatch; check the run with prep-verify")
        return payload

    def _values(self, features: dict) -> dict:
        record = {}
        for key, (kind, values) in features.items():
            if key == self.image_key and kind == "bytes" and len(values) == 1:
                record[key] = values[0]
                continue
            values = [_text(v) if kind == "bytes" else v for v in values]
            record[key] = values[0] if len(values) == 1 else values
        if self.decode and isinstance(record.get(self.image_key), bytes):
            record[self.image_key] = self._pixels(record)
        return record

    def _pixels(self, record: dict) -> np.ndarray:
        data = record[self.image_key]
        if self.raw:
            shape = tuple(record.get(k) for k in self._shape_keys)
            if not all(isinstance(v, int) and v > 0 for v in shape) or shape[0] * shape[1] * shape[2] != len(data):
                raise EncodeError(f"raw pixels of {len(data)} bytes do not match height x width x channels {list(shape)}")
            _guard(shape[1], shape[0], self.max_pixels)
            return np.frombuffer(bytearray(data), np.uint8).reshape(shape)  # bytearray: a writable array
        return decode_image(data, self.max_pixels)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_files"] = {}  # open files stay with the process that opened them
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"RecordDataset({self.run_dir!r}, {self.split!r}, decode={self.decode})"


def _text(value: bytes):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def _guard(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise EncodeError(f"{width}x{height} is over max_pixels={max_pixels} (a decompression-bomb guard; pass a larger max_pixels)")


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes as tf.io.decode_image(channels=0) gives them: uint8 HxWxC, RGB(A), gray HxWx1.

    The header's size is checked against max_pixels before a decoder sees the bytes. 16-bit images are
    scaled to 8 bits as TensorFlow does (the high byte), gray + alpha PNGs give two channels; EXIF orientation
    is not applied (TensorFlow's neither).
    """
    import cv2

    info = read_header(data)  # EncodeError for bytes that are no image OpenCV reads
    _guard(info.width, info.height, max_pixels)
    check_complete(data, info.format)
    # IMREAD_UNCHANGED never applies EXIF orientation (OpenCV turns JPEGs only for the other flags; -1 has every
    # bit set, so IMREAD_IGNORE_ORIENTATION cannot be added): the stored pixels, as the height/width features say.
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise EncodeError(f"cannot decode the image data ({info.format})")
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise EncodeError(f"a {info.format} of {pixels.dtype} pixels; RecordDataset gives uint8 (pass decode=False for the bytes)")
    if pixels.ndim == 2:
        return pixels[:, :, None]
    if pixels.shape[2] == 4 and info.format == "png" and data[25] == 4:  # IHDR colour type 4: gray + alpha
        return np.ascontiguousarray(pixels[:, :, [0, 3]])  # OpenCV gives gray, gray, gray, alpha; TensorFlow two channels
    if pixels.shape[2] == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if pixels.shape[2] == 4:
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA)
    return pixels
