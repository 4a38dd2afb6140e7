"""OFRecord (OneFlow): records back to back, each an int64 little-endian length and a serialized OFRecord; no checksum."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import BinaryIO

from prep.core.errors import PrepError
from prep.formats import protowire
from prep.formats.protowire import Kind

# Feature oneof of oneflow/core/record/record.proto.
KINDS = {
    "bytes": Kind("bytes", 1, "bytes"),
    "float": Kind("float", 2, "<f"),
    "double": Kind("double", 3, "<d"),
    "int32": Kind("int32", 4, "varint"),
    "int64": Kind("int64", 5, "varint"),
}
_KINDS_BY_FIELD = {kind.field: kind for kind in KINDS.values()}


class RecordError(PrepError):
    """An OFRecord file whose framing is wrong."""


def frame_header(size: int) -> bytes:
    return struct.pack("<q", size)


def record_chunks(features: Mapping[str, tuple[str, Sequence]]) -> protowire.Chunks:
    """A serialized OFRecord as chunks; `features` maps key -> (kind name, values)."""
    return protowire.encode_feature_map({k: (KINDS[t], v) for k, (t, v) in features.items()})


def encode_record(features: Mapping[str, tuple[str, Sequence]]) -> bytes:
    return protowire.join(record_chunks(features))


def decode_record(data: bytes) -> dict[str, tuple[str, list]]:
    return protowire.decode_feature_map(data, _KINDS_BY_FIELD)


def _next_payload(stream: BinaryIO, where: str) -> bytes | None:
    head = stream.read(8)
    if not head:
        return None
    if len(head) < 8:
        raise RecordError(f"{where}: truncated length")
    (size,) = struct.unpack("<q", head)
    if size < 0:
        raise RecordError(f"{where}: negative length {size}")
    # No checksum guards the length: read it in bounded pieces, so a corrupt one only reads as truncated.
    payload = protowire.read_exact(stream, size)
    if len(payload) < size:
        raise RecordError(f"{where}: truncated payload ({len(payload)} of {size} bytes)")
    return payload


def read_records(stream: BinaryIO, name: str = "<stream>") -> Iterator[tuple[int, bytes]]:
    """Yield (offset, payload) of every record; RecordError names the record and offset when the framing breaks."""
    offset = 0
    index = 0
    while True:
        where = f"{name}: record {index} at byte {offset}"
        try:
            payload = _next_payload(stream, where)
        except OSError as err:
            raise RecordError(f"{where}: cannot read: {err.strerror or err}") from None
        if payload is None:
            return
        yield offset, payload
        offset += 8 + len(payload)
        index += 1
