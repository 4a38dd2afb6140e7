"""TIFF and BigTIFF: the fields of the first directory, and the channels OpenCV's TIFF decoder gives for them."""

from __future__ import annotations

import struct

from prep.core.errors import EncodeError
from prep.formats.images.base import ImageInfo, gray_or_rgb

_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q", 6: "b", 8: "h", 9: "i", 17: "q"}  # integer field types
_WANTED = {256: "width", 257: "height", 258: "bits", 262: "photometric", 274: "orientation", 277: "samples", 320: "colormap"}


def read_tiff(data: bytes) -> ImageInfo:
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    if big:
        offset_size, _zero, ifd = struct.unpack_from(order + "HHQ", data, 4)
        if offset_size != 8:
            raise EncodeError(f"corrupt BigTIFF: offset size {offset_size}")
        (count,) = struct.unpack_from(order + "Q", data, ifd)
        entry, first, value_size = order + "HHQ", ifd + 8, 8
        if count > 4096:  # libtiff's own sanity limit for a BigTIFF directory
            raise EncodeError(f"corrupt BigTIFF: {count} directory entries")
    else:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
        entry, first, value_size = order + "HHI", ifd + 2, 4
    step = struct.calcsize(entry) + value_size
    fields: dict[str, int] = {}
    for pos in range(first, first + count * step, step):
        tag, kind, number = struct.unpack_from(entry, data, pos)
        name = _WANTED.get(tag)
        if name is None or kind not in _TYPES or number < 1:
            continue
        code = order + _TYPES[kind]
        size = struct.calcsize(code)
        at = pos + step - value_size  # the value itself when it fits, otherwise the offset of the values
        if size * number > value_size:
            (at,) = struct.unpack_from(order + ("Q" if big else "I"), data, at)
        (value,) = struct.unpack_from(code, data, at)
        if name in ("width", "height") and (number != 1 or fields.get(name, value) != value):
            raise EncodeError(f"corrupt TIFF: {number} or conflicting {name} values")
        fields.setdefault(name, number if name == "colormap" else value)
    if "width" not in fields or "height" not in fields:
        raise EncodeError("corrupt TIFF: the first directory has no ImageWidth/ImageLength")
    width, height = fields["width"], fields["height"]
    channels = _channels(fields)
    if fields.get("orientation", 1) in (5, 6, 7, 8):  # OpenCV turns these a quarter: width and height swap
        width, height = height, width
    return ImageInfo("tiff", height, width, channels, "CMYK" if fields.get("photometric") == 5 else gray_or_rgb(channels))


def _channels(fields: dict[str, int]) -> int:
    """The channels OpenCV's TIFF decoder gives (its readHeader, case by case)."""
    bits = fields.get("bits", 1)
    libtiff_samples = fields.get("samples", 1)  # libtiff's default; OpenCV's own guess below differs
    photometric = fields.get("photometric", 2 if libtiff_samples >= 3 else 1)  # libtiff's guess when missing
    colormap = bits <= 16 and fields.get("colormap") == 3 << bits  # libtiff ignores a ColorMap of another length
    if photometric == 3 and not colormap and bits >= 8:  # libtiff's fix for a palette without colours
        photometric = 2 if libtiff_samples == 3 else 1
    gray = photometric in (0, 1)
    samples = fields.get("samples", 1 if gray else 3)
    if samples == 3 and photometric == 32845:  # LogLuv
        return 3
    if bits > 8 and (photometric > 2 or samples not in (1, 3, 4)):
        bits = 8
    if not 1 <= samples <= 4:
        raise EncodeError(f"tiff: {samples} samples per pixel is not supported")
    if bits == 4 and photometric != 3:
        raise EncodeError("tiff: 4 bits per sample only for palette images")
    if bits not in (1, 4, 8, 10, 12, 14, 16, 32, 64):
        raise EncodeError(f"tiff: {bits} bits per sample is not supported")
    if photometric == 3 and bits in (4, 8):
        return 3
    return 1 if gray and bits <= 16 else samples
