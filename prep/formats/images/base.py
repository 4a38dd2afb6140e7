"""What every image-header reader shares: the ImageInfo result, size limits and the ISO box walk."""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_SIDE = 2**31 - 1  # decoders keep sizes in a C int: a larger header value is corrupt, not an image
WHITESPACE = b" \t\n\r\x0b\x0c"  # C's isspace, which OpenCV's text-header readers use
TEXT_HEADER_LIMIT = 65536  # real text headers are a few lines; this bounds the walk over a junk file


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "jpeg", "png", "gif", "bmp", "webp", "tiff", "jp2", "j2k", "pnm", "pam", "pfm", "ras", "hdr", "avif"
    height: int
    width: int
    channels: int  # as OpenCV decodes it unchanged: CMYK JPEGs give 3, gray+alpha PNGs 4
    colorspace: str = ""  # "CMYK" for CMYK JPEG/TIFF, otherwise "RGB" or "GRAY" where known
    # EXIF orientation of a JPEG (1..8, 1 = upright; height/width are still the stored pixels'). Other formats
    # give 1: OpenCV's TIFF decoder turns its pixels itself, and the header reader already swaps those sizes.
    orientation: int = 1


def gray_or_rgb(channels: int) -> str:
    """The colorspace of an image whose format has no CMYK: one channel is gray, more are colour."""
    return "GRAY" if channels == 1 else "RGB"


# ---- ISO boxes: JPEG 2000 (JP2) files and AVIF's ISO base media format are both made of them ----


def boxes(data: bytes, pos: int, end: int):
    """(type, payload start, payload end) of ISO/JP2 boxes in data[pos:end]; a box cut short ends at `end`."""
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:  # to the end of the file
            size = end - pos
        if size < header:
            return
        yield kind, pos + header, min(pos + size, end)
        pos += size
