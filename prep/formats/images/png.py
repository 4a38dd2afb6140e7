"""PNG: the IHDR chunk for size and colour type, tRNS for alpha, and the walk to the IEND chunk."""

from __future__ import annotations

import struct
import zlib

from prep.core.errors import EncodeError
from prep.formats.images.base import MAX_SIDE, ImageInfo, gray_or_rgb

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chunks(data: bytes):
    """(type, data start, data end) of each chunk in order; stops at IEND or where the file ends."""
    pos = 8
    end = len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        if length > MAX_SIDE:  # the PNG spec's limit; a larger one is corrupt
            return
        yield kind, pos + 8, pos + 8 + length
        if kind == b"IEND":
            return
        pos += 12 + length


def read_png(data: bytes) -> ImageInfo:
    if data[12:16] != b"IHDR":
        raise EncodeError("corrupt PNG: first chunk is not IHDR")
    width, height, _depth, color_type = struct.unpack_from(">IIBB", data, 16)
    if color_type not in (0, 2, 3, 4, 6):
        raise EncodeError(f"corrupt PNG: colour type {color_type}")
    transparency = False
    if color_type in (2, 3):  # a tRNS chunk turns RGB and palette images into BGRA in OpenCV (not gray ones)
        colours = 0
        for kind, start, stop in _chunks(data):
            if kind == b"PLTE":
                colours = (stop - start) // 3
            if kind == b"IDAT":
                break
            if kind == b"tRNS":  # libpng drops one with a bad CRC or a length that does not fit
                length = stop - start
                fits = length == 6 if color_type == 2 else 0 < length <= min(colours, 256)
                transparency = fits and data[stop : stop + 4] == struct.pack(">I", zlib.crc32(data[start - 4 : stop]))
                break
    # OpenCV has no 2-channel output: gray+alpha decodes to BGRA.
    channels = 1 if color_type == 0 else 4 if color_type in (4, 6) or transparency else 3
    return ImageInfo("png", height, width, channels, gray_or_rgb(channels))


def missing_iend(data: bytes) -> str | None:
    for kind, _start, stop in _chunks(data):
        if kind == b"IEND" and stop + 4 <= len(data):  # with its CRC
            return None
    return "truncated png: the chunks end before the IEND chunk"
