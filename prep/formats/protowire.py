"""Protocol-buffer wire encoding and decoding of the feature maps shared by tf.train.Example and OFRecord.

Writing builds the bytes directly instead of protobuf message objects: an image is copied once into
the record instead of into a message and out again, and the output equals protobuf's deterministic
serialization (map keys sorted), which the tests check against the messages built from our `.proto`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prep.errors import PrepError

_U64 = (1 << 64) - 1


class WireError(PrepError):
    """Bytes that are not a valid serialized feature map."""


def varint(value: int) -> bytes:
    """Base-128 varint; negative numbers as 64-bit two's complement, as protobuf does for int32/int64."""
    value &= _U64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(payload)) + payload


@dataclass(frozen=True)
class Kind:
    """One value type of a Feature's oneof: its field number and how a list of it is packed."""

    name: str
    field: int
    packing: str  # "bytes" (one length-delimited value each), "varint", "<f" or "<d" (packed)


# Messages are built as lists of chunks with known sizes, so an image's bytes are never copied while
# the nested length prefixes are put in front of them; the writer streams the chunks to the file.
Chunks = tuple[list, int]


def _wrap(field: int, chunks: Chunks) -> Chunks:
    parts, size = chunks
    head = varint(field << 3 | 2) + varint(size)
    return [head, *parts], len(head) + size


def _encode_list(kind: Kind, values: Sequence) -> Chunks:
    if kind.packing == "bytes":
        parts: list = []
        size = 0
        for value in values:
            head = b"\x0a" + varint(len(value))
            parts += (head, value)
            size += len(head) + len(value)
        return parts, size
    if not values:
        return [], 0
    if kind.packing == "varint":
        packed = b"".join(varint(int(v)) for v in values)
    else:
        packed = struct.pack(f"<{len(values)}{kind.packing[1]}", *values)
    return _wrap(1, ([packed], len(packed)))


def encode_feature_map(features: Mapping[str, tuple[Kind, Sequence]]) -> Chunks:
    """Serialize `map<string, Feature> feature = 1`, keys sorted (protobuf's deterministic order), as chunks."""
    parts: list = []
    size = 0
    for key in sorted(features):
        kind, values = features[key]
        name = length_delimited(1, key.encode("utf-8"))
        feature_parts, feature_size = _wrap(2, _wrap(kind.field, _encode_list(kind, values)))
        entry = _wrap(1, ([name, *feature_parts], len(name) + feature_size))
        parts += entry[0]
        size += entry[1]
    return parts, size


def wrap_message(field: int, chunks: Chunks) -> Chunks:
    """Embed a serialized message as field `field` of an outer message (Example.features = 1)."""
    return _wrap(field, chunks)


def join(chunks: Chunks) -> bytes:
    return b"".join(chunks[0])


def _read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, pos: int, end: int):
    """Yield (field number, wire type, value) of one message: value is an int or a memoryview slice."""
    while pos < end:
        tag, pos = _read_varint(buf, pos, end)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos, end)
        elif wire == 2:
            size, pos = _read_varint(buf, pos, end)
            if pos + size > end:
                raise WireError("length-delimited field runs past the end of its message")
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire == 1:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            value, pos = buf[pos : pos + 8], pos + 8
        else:
            raise WireError(f"unsupported wire type {wire}")
        yield field, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _decode_list(kind: Kind, body: memoryview) -> list:
    values: list = []
    for field, wire, value in _fields(body, 0, len(body)):
        if field != 1:
            continue
        if kind.packing == "bytes":
            values.append(bytes(value))
        elif wire == 2:  # packed
            if kind.packing == "varint":
                pos = 0
                while pos < len(value):
                    number, pos = _read_varint(value, pos, len(value))
                    values.append(_signed64(number))
            else:
                values.extend(struct.unpack(f"<{len(value) // struct.calcsize(kind.packing)}{kind.packing[1]}", value))
        elif kind.packing == "varint":
            values.append(_signed64(value))
        else:
            values.append(struct.unpack(kind.packing, value)[0])
    if kind.name == "int32":
        values = [((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31) for v in values]
    return values


def decode_feature_map(data: bytes | memoryview, kinds: Mapping[int, Kind]) -> dict[str, tuple[str, list]]:
    """Parse a serialized `map<string, Feature>` into {key: (kind name, values)}."""
    buf = memoryview(data)
    out: dict[str, tuple[str, list]] = {}
    for field, wire, entry in _fields(buf, 0, len(buf)):
        if field != 1 or wire != 2:
            continue
        key, feature = "", None
        for efield, ewire, evalue in _fields(entry, 0, len(entry)):
            if efield == 1 and ewire == 2:
                key = bytes(evalue).decode("utf-8", errors="replace")
            elif efield == 2 and ewire == 2:
                feature = evalue
        kind_name, values = "none", []
        if feature is not None:
            for ffield, fwire, fvalue in _fields(feature, 0, len(feature)):
                if fwire == 2 and ffield in kinds:
                    kind = kinds[ffield]
                    kind_name, values = kind.name, _decode_list(kind, fvalue)
        out[key] = (kind_name, values)
    return out
