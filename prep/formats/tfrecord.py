"""TFRecord: framing (length, masked CRC-32C of the length, payload, masked CRC-32C of the payload) and tf.train.Example."""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import BinaryIO

import google_crc32c

from prep.core.errors import PrepError
from prep.formats import protowire
from prep.formats.protowire import Kind

# Feature oneof of tensorflow/core/example/feature.proto.
KINDS = {
    "bytes": Kind("bytes", 1, "bytes"),
    "float": Kind("float", 2, "<f"),
    "int64": Kind("int64", 3, "varint"),
}
_KINDS_BY_FIELD = {kind.field: kind for kind in KINDS.values()}
_MASK_DELTA = 0xA282EAD8


class RecordError(PrepError):
    """A TFRecord file whose framing or checksums are wrong."""


def mask(crc: int) -> int:
    """TFRecord stores CRCs rotated and offset, because CRCs of data that contains CRCs are weak."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    return mask(google_crc32c.value(data))


def frame_header(size: int) -> bytes:
    length = struct.pack("<Q", size)
    return length + struct.pack("<I", masked_crc(length))


def frame(payload: bytes) -> bytes:
    """One whole framed record; the writer streams the same bytes without joining them."""
    return frame_header(len(payload)) + payload + struct.pack("<I", masked_crc(payload))


def payload_footer(chunks: Sequence[bytes]) -> bytes:
    crc = 0
    for chunk in chunks:
        crc = google_crc32c.extend(crc, chunk)
    return struct.pack("<I", mask(crc))


def example_chunks(features: Mapping[str, tuple[str, Sequence]]) -> protowire.Chunks:
    """A serialized tf.train.Example as chunks; `features` maps key -> (kind name, values)."""
    return protowire.wrap_message(1, protowire.encode_feature_map({k: (KINDS[t], v) for k, (t, v) in features.items()}))


def encode_example(features: Mapping[str, tuple[str, Sequence]]) -> bytes:
    return protowire.join(example_chunks(features))


def decode_example(data: bytes) -> dict[str, tuple[str, list]]:
    """Parse a serialized tf.train.Example into {key: (kind name, values)}."""
    for field, wire, value in protowire._fields(memoryview(data), 0, len(data)):
        if field == 1 and wire == 2:
            return protowire.decode_feature_map(value, _KINDS_BY_FIELD)
    return {}


def decompressing(stream: BinaryIO, compression: str | None) -> BinaryIO:
    """The record stream inside a (possibly gzip- or zlib-compressed) shard file."""
    if compression == "gzip":
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if compression == "zlib":
        return _ZlibReader(stream)
    return stream


class _ZlibReader:
    """Read-only stream over a zlib-compressed file (TFRecordDataset's compression_type='ZLIB').

    Decompresses only as much as each read asks for, so a shard is never inflated whole in memory.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._inflate = zlib.decompressobj()

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while (size < 0 or len(out) < size) and not self._inflate.eof:
            data = self._inflate.unconsumed_tail or self._stream.read(1 << 20)
            # With no input left, zlib may still hold output it stopped at the size limit: drain it first.
            more = self._inflate.decompress(data, 0 if size < 0 else size - len(out))
            if not data and not more:
                raise EOFError("the zlib stream ends before its end marker")
            out += more
        return bytes(out)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


# What a broken compressed stream raises: gzip.BadGzipFile is an OSError, a cut-off one an EOFError.
_STREAM_ERRORS = (OSError, EOFError, zlib.error)


def _next_payload(stream: BinaryIO, where: str) -> bytes | None:
    head = stream.read(12)
    if not head:
        return None
    if len(head) < 12:
        raise RecordError(f"{where}: truncated length header")
    (size,) = struct.unpack("<Q", head[:8])
    (crc,) = struct.unpack("<I", head[8:])
    if crc != masked_crc(head[:8]):
        raise RecordError(f"{where}: length CRC mismatch")
    payload = protowire.read_exact(stream, size)  # bounded: the length may still be wrong
    footer = stream.read(4)
    if len(payload) < size or len(footer) < 4:
        raise RecordError(f"{where}: truncated payload ({len(payload)} of {size} bytes)")
    if struct.unpack("<I", footer)[0] != masked_crc(payload):
        raise RecordError(f"{where}: payload CRC mismatch")
    return payload


def read_records(stream: BinaryIO, name: str = "<stream>") -> Iterator[tuple[int, bytes]]:
    """Yield (offset, payload) of every record, checking both CRCs; RecordError names the record and offset."""
    offset = 0
    index = 0
    while True:
        where = f"{name}: record {index} at byte {offset}"
        try:
            payload = _next_payload(stream, where)
        except _STREAM_ERRORS as err:
            raise RecordError(f"{where}: cannot read: {err}") from None
        if payload is None:
            return
        yield offset, payload
        offset += 16 + len(payload)
        index += 1
