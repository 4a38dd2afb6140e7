"""Radiance HDR: the text header's FORMAT line and its "-Y height +X width" size line."""

from __future__ import annotations

import re

from prep.core.errors import EncodeError
from prep.formats.images.base import TEXT_HEADER_LIMIT, ImageInfo


def read_hdr(data: bytes) -> ImageInfo:
    """rgbe.cpp's RGBE_ReadHeader: lines as fgets reads them (at most 127 bytes), a FORMAT line, a blank line,
    then "-Y <height> +X <width>"; other orientations OpenCV does not read."""
    pos = 0
    has_format = False
    lines = 0
    while True:
        newline = data.find(b"\n", pos, pos + 127)
        stop = newline + 1 if newline >= 0 else min(pos + 127, len(data))
        if pos >= len(data) or stop > TEXT_HEADER_LIMIT:
            raise EncodeError("hdr header has no blank line before the size")
        line = data[pos:stop].split(b"\x00")[0]
        pos = stop
        lines += 1
        if lines > 1 and line[:1] == b"\n":
            break
        has_format |= lines > 1 and line == b"FORMAT=32-bit_rle_rgbe\n"
    if not has_format:
        raise EncodeError("hdr header has no FORMAT=32-bit_rle_rgbe line")
    newline = data.find(b"\n", pos, pos + 127)
    line = data[pos : newline + 1 if newline >= 0 else pos + 127].split(b"\x00")[0]
    size = re.match(rb"-Y\s*([+-]?[0-9]{1,11})\s*\+X\s*([+-]?[0-9]{1,11})", line)
    if size is None:
        raise EncodeError("hdr: size cannot be read before decoding (only -Y height +X width is read)")
    return ImageInfo("hdr", int(size.group(1)), int(size.group(2)), 3, "RGB")
