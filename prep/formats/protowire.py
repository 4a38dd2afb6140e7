"""Protocol-buffer wire encoding and decoding of the feature maps shared by tf.train.Example and OFRecord.

Writing builds the bytes directly instead of protobuf message objects: an image is copied once into
the record instead of into a message and out again, and the output equals protobuf's deterministic
serialization (map keys sorted), which the tests check against the messages built from our `.proto`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prep.core.errors import PrepError

_U64 = (1 << 64) - 1


class WireError(PrepError):
    """Bytes that are not a valid serialized feature map."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Lengths and small integers dominate a record's varints: look them up instead of computing them.
_TABLE = [_varint(n) for n in range(1 << 14)]


def varint(value: int) -> bytes:
    """Base-128 varint; negative numbers as 64-bit two's complement, as protobuf does for int32/int64."""
    if 0 <= value < 16384:
        return _TABLE[value]
    if 0 <= value < 2097152:  # three bytes: image lengths up to 2 MB, without the loop
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    return _varint(value & _U64)



@dataclass(frozen=True)
class Kind:
    """One value type of a Feature's oneof: its field number and how a list of it is packed."""

    name: str
    field: int
    packing: str  # "bytes" (one length-delimited value each), "varint", "<f" or "<d" (packed)


# Messages are built as short lists of chunks with known sizes: small fields are joined into one bytes
# object, while a large value (an image) stays a chunk of its own, so its bytes are never copied while
# the nested length prefixes are put in front of it. The writer streams the chunks to the file.
Chunks = tuple[list, int]
SMALL = 4096  # values below this are copied into the surrounding bytes; larger ones stay separate chunks


def _ld(field_tag: bytes, payload: bytes) -> bytes:
    return field_tag + varint(len(payload)) + payload


def _list_body(kind: Kind, values: Sequence) -> bytes:
    if kind.packing == "bytes":
        return b"".join(b"\x0a" + varint(len(v)) + bytes(v) for v in values)
    if not values:
        return b""
    if kind.packing == "varint":
        packed = b"".join(varint(int(v)) for v in values)
    else:
        packed = struct.pack(f"<{len(values)}{kind.packing[1]}", *values)
    return b"\x0a" + varint(len(packed)) + packed


# The keys of a writer's records, sorted, each with its encoded map-entry key: the same for every record of
# a run, so worked out once per set of keys.
_KEY_ORDER: dict[tuple[str, ...], list[tuple[str, bytes]]] = {}


def _key_order(features: Mapping) -> list[tuple[str, bytes]]:
    keys = tuple(features)
    order = _KEY_ORDER.get(keys)
    if order is None:
        if len(_KEY_ORDER) > 64:
            _KEY_ORDER.clear()
        order = _KEY_ORDER[keys] = [(key, _ld(b"\x0a", key.encode("utf-8"))) for key in sorted(features)]
    return order


def encode_feature_map(features: Mapping[str, tuple[Kind, Sequence]]) -> Chunks:
    """Serialize `map<string, Feature> feature = 1`, keys sorted (protobuf's deterministic order), as chunks."""
    parts: list = []
    pending = bytearray()  # small bytes since the last large chunk
    for key, name in _key_order(features):
        kind, values = features[key]
        tag = _TAGS[kind.field]
        if len(values) != 1 or len(name) > SMALL:
            pass  # the general case below
        elif kind.packing == "varint" and 0 <= values[0] < 16384:  # a label, a height: one small number
            number = _TABLE[int(values[0])]
            body = b"\x0a" + _TABLE[len(number)] + number
            feature = tag + _TABLE[len(body)] + body
            entry = name + b"\x12" + _TABLE[len(feature)] + feature
            pending += b"\x0a" + _TABLE[len(entry)] + entry
            continue
        elif kind.packing == "bytes" and len(values[0]) < SMALL:  # a format, a file name, a small image
            value = bytes(values[0])
            body = b"\x0a" + _TABLE[len(value)] + value
            feature = tag + _TABLE[len(body)] + body
            entry = name + b"\x12" + _TABLE[len(feature)] + feature
            pending += b"\x0a" + _TABLE[len(entry)] + entry
            continue
        if kind.packing == "bytes" and len(values) == 1 and len(values[0]) >= SMALL:
            value = values[0]
            list_size = 1 + len(varint(len(value))) + len(value)
            feature_size = 1 + len(varint(list_size)) + list_size
            entry_size = len(name) + 1 + len(varint(feature_size)) + feature_size
            pending += b"\x0a" + varint(entry_size) + name + b"\x12" + varint(feature_size)
            pending += tag + varint(list_size) + b"\x0a" + varint(len(value))
            parts += (bytes(pending), value)
            pending.clear()
        else:
            entry = name + _ld(b"\x12", _ld(tag, _list_body(kind, values)))
            pending += b"\x0a" + varint(len(entry)) + entry
    if pending or not parts:
        parts.append(bytes(pending))
    return parts, sum(map(len, parts))


_TAGS = {field: varint(field << 3 | 2) for field in range(1, 16)}


def wrap_message(field: int, chunks: Chunks) -> Chunks:
    """Embed a serialized message as field `field` of an outer message (Example.features = 1)."""
    parts, size = chunks
    head = _TAGS[field] + varint(size)
    if parts and len(parts[0]) < SMALL:
        return [head + parts[0], *parts[1:]], len(head) + size
    return [head, *parts], len(head) + size


def join(chunks: Chunks) -> bytes:
    return b"".join(chunks[0])


_READ_PIECE = 1 << 24  # 16 MiB


def read_exact(stream, size: int) -> bytes:
    """`size` bytes from a record stream, or fewer when it ends first.

    Read in pieces of at most 16 MiB, because `size` comes from a length field in the file: a corrupt
    one (2**63) must cost no more memory than the file really holds, and then read as truncated.
    """
    if size <= _READ_PIECE:
        data = stream.read(size)
        if len(data) == size or not data:
            return data
        parts, size = [data], size - len(data)
    else:
        parts = []
    while size > 0:
        part = stream.read(min(size, _READ_PIECE))
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


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


_WIRE_OF = {"bytes": 2, "varint": 0, "<f": 5, "<d": 1}  # the wire type of one unpacked value


def _decode_list(kind: Kind, body: memoryview) -> list:
    values: list = []
    for field, wire, value in _fields(body, 0, len(body)):
        if field != 1:
            continue
        if wire == 2 and kind.packing != "bytes":  # packed
            if kind.packing == "varint":
                pos = 0
                while pos < len(value):
                    number, pos = _read_varint(value, pos, len(value))
                    values.append(_signed64(number))
            else:
                width = struct.calcsize(kind.packing)
                if len(value) % width:
                    raise WireError(f"packed {kind.name} list of {len(value)} bytes is not a multiple of {width}")
                values.extend(struct.unpack(f"<{len(value) // width}{kind.packing[1]}", value))
        elif wire != _WIRE_OF[kind.packing]:
            # protobuf rejects a known field with the wrong wire type; decoding it anyway would turn a
            # varint into bytes(n) (an allocation of n bytes) or hand struct an int.
            raise WireError(f"{kind.name} list value with wire type {wire}")
        elif kind.packing == "bytes":
            values.append(bytes(value))
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
