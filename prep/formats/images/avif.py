"""AVIF: the primary item's ispe size, and alpha from an auxiliary item, as libavif finds them."""

from __future__ import annotations

import struct

from prep.core.errors import EncodeError
from prep.formats.images.base import ImageInfo, boxes, gray_or_rgb

# The item properties libavif reads; an item with another one marked essential is skipped.
_PROPERTIES = {b"ispe", b"auxC", b"colr", b"av1C", b"pasp", b"clap", b"irot", b"imir", b"pixi", b"a1op", b"lsel", b"a1lx", b"clli"}


def is_avif(data: bytes) -> bool:
    """libavif's check: the first box is ftyp and lists "avif" or "avis" as major or compatible brand."""
    (size,) = struct.unpack_from(">I", data, 0)
    brands = bytes(data[8 : min(size, len(data), 4096)])
    return any(brands[i : i + 4] in (b"avif", b"avis") for i in range(0, len(brands) - 3, 4) if i != 4)


def _children(data: bytes, start: int, stop: int, *needed: bytes) -> dict[bytes, tuple[int, int]]:
    """The first box of each type in data[start:stop]; EncodeError naming a needed one that is missing."""
    found: dict[bytes, tuple[int, int]] = {}
    for kind, s, e in boxes(data, start, stop):
        found.setdefault(kind, (s, e))
    missing = [kind.decode("latin-1") for kind in needed if kind not in found]
    if missing:
        raise EncodeError(f"truncated or corrupt avif: no {'/'.join(missing)} box")
    return found


def read_avif(data: bytes) -> ImageInfo:
    top = _children(data, 0, len(data))
    if b"moov" in top:  # libavif decodes the track, whose size only its sample headers give
        raise EncodeError("avif image sequence: size cannot be read before decoding")
    start, stop = _children(data, 0, len(data), b"meta")[b"meta"]
    meta = _children(data, start + 4, stop, b"pitm", b"iprp")  # meta is a full box: 4 bytes version and flags
    pitm = meta[b"pitm"][0]
    (primary,) = struct.unpack_from(">I" if data[pitm] else ">H", data, pitm + 4)
    iprp = _children(data, *meta[b"iprp"], b"ipco", b"ipma")
    properties = list(boxes(data, *iprp[b"ipco"]))
    associations = _ipma(data, *iprp[b"ipma"])

    def props(item: int) -> dict[bytes, int] | None:
        """Where each property of the item starts; None when libavif skips the item for an essential property
        it does not know."""
        found = {}
        for index, essential in associations.get(item, ()):
            if 0 < index <= len(properties):
                kind, start, _stop = properties[index - 1]
                if essential and kind not in _PROPERTIES:
                    return None
                found.setdefault(kind, start)
        return found

    own = props(primary) or {}
    if b"ispe" not in own:
        raise EncodeError("corrupt avif: the primary image has no ispe size")
    width, height = struct.unpack_from(">II", data, own[b"ispe"] + 4)
    mono = b"av1C" in own and bool(data[own[b"av1C"] + 2] & 0x10)
    channels = (1 if mono else 3) + _has_alpha(data, meta, primary, props)
    return ImageInfo("avif", height, width, channels, gray_or_rgb(channels))


def _ipma(data: bytes, start: int, stop: int) -> dict[int, list[tuple[int, bool]]]:
    """item -> [(1-based property index, essential)]"""
    version, flags = data[start], data[start + 3]
    (count,) = struct.unpack_from(">I", data, start + 4)
    pos = start + 8
    found: dict[int, list[int]] = {}
    for _ in range(min(count, stop - pos)):
        item = struct.unpack_from(">I" if version else ">H", data, pos)[0]
        pos += 4 if version else 2
        number = data[pos]
        pos += 1
        wide = flags & 1
        values = struct.unpack_from((">%dH" if wide else ">%dB") % number, data, pos)
        top = 0x8000 if wide else 0x80  # the essential bit; the rest is the index
        found.setdefault(item, [(value & (top - 1), bool(value & top)) for value in values])
        pos += number * (1 + wide)
    return found


def _iloc_items(data: bytes, start: int, stop: int) -> set[int]:
    """The items that have data (iloc extents of more than 0 bytes); libavif ignores an alpha item without."""
    version = data[start]
    sizes = data[start + 4] << 8 | data[start + 5]  # offset, length, base offset and index sizes, a nibble each
    offset_size, length_size, base_size = sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15
    index_size = sizes & 15 if version else 0
    id_code = ">I" if version == 2 else ">H"
    (count,) = struct.unpack_from(id_code, data, start + 6)
    pos = start + 6 + struct.calcsize(id_code)
    items = set()
    for _ in range(min(count, stop - pos)):
        (item,) = struct.unpack_from(id_code, data, pos)
        pos += struct.calcsize(id_code) + (2 if version else 0) + 2 + base_size  # method, data reference, base
        (extents,) = struct.unpack_from(">H", data, pos)
        pos += 2
        size = 0
        for _ in range(extents):
            pos += index_size + offset_size
            size += int.from_bytes(data[pos : pos + length_size], "big")
            pos += length_size
        if size:
            items.add(item)
    return items


def _iinf_images(data: bytes, start: int, stop: int) -> set[int]:
    """The items that iinf declares as AV1 images (or grids of them); libavif ignores others."""
    pos = start + (6 if data[start] == 0 else 8)  # entry count: 16 bits in version 0, else 32
    images = set()
    for kind, entry, _end in boxes(data, pos, stop):
        version = data[entry]
        if kind == b"infe" and version >= 2:
            item_code = ">I" if version == 3 else ">H"
            (item,) = struct.unpack_from(item_code, data, entry + 4)
            kind_at = entry + 4 + struct.calcsize(item_code) + 2  # after the protection index
            if data[kind_at : kind_at + 4] in (b"av01", b"grid"):
                images.add(item)
    return images


def _has_alpha(data: bytes, meta: dict, primary: int, props) -> bool:
    """libavif's alphaPresent: an auxiliary (auxl) AV1 item of the primary image, with data, whose auxC says alpha."""
    if b"iref" not in meta or b"iloc" not in meta or b"iinf" not in meta:
        return False
    located = _iloc_items(data, *meta[b"iloc"]) & _iinf_images(data, *meta[b"iinf"])
    start, stop = meta[b"iref"]
    wide = data[start] != 0
    for kind, pos, _end in boxes(data, start + 4, stop):
        if kind != b"auxl":
            continue
        source, count = struct.unpack_from(">IH" if wide else ">HH", data, pos)
        targets = struct.unpack_from((">%dI" if wide else ">%dH") % count, data, pos + (6 if wide else 4))
        aux = (props(source) or {}).get(b"auxC")
        if primary in targets and source in located and aux is not None:
            urn = data[aux + 4 : aux + 64].split(b"\x00")[0]
            if urn in (b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha", b"urn:mpeg:hevc:2015:auxid:1"):
                return True
    return False
