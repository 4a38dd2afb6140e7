"""GIF: the logical screen size, transparency from graphic control extensions, and the walk to the trailer."""

from __future__ import annotations

import struct

from prep.formats.images.base import ImageInfo


def _walk(data: bytes) -> tuple[bool, bool]:
    """(transparent, complete): OpenCV decodes BGRA when the last graphic control extension in the file has a
    transparent colour; the file is complete when its blocks reach the trailer (OpenCV refuses it otherwise)."""
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    end = len(data)
    transparent = False
    while pos < end:
        block = data[pos]
        pos += 1
        if block == 0x3B:
            return transparent, True
        if block == 0x21:  # extension: label, then sub-blocks
            if pos + 3 <= end and data[pos] == 0xF9 and data[pos + 1] == 4:
                transparent = bool(data[pos + 2] & 1)
            pos += 1
        elif block == 0x2C:  # image: descriptor, optional local colour table, LZW code size, sub-blocks
            if pos + 9 > end:
                break
            local = data[pos + 8]
            pos += 9 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
        else:
            break
        while pos < end and data[pos]:  # sub-blocks, each led by its length, up to a zero length
            pos += data[pos] + 1
        pos += 1
    return transparent, False


def read_gif(data: bytes) -> ImageInfo:
    width, height = struct.unpack_from("<HH", data, 6)  # the logical screen: OpenCV's output size
    transparent, _complete = _walk(data)
    return ImageInfo("gif", height, width, 4 if transparent else 3, "RGB")


def missing_trailer(data: bytes) -> str | None:
    return None if _walk(data)[1] else "truncated or corrupt gif: its blocks do not reach the trailer"
