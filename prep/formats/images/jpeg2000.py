"""JPEG 2000: the SIZ segment of a raw codestream (j2k) or of the one inside a JP2 file."""

from __future__ import annotations

import struct

from prep.core.errors import EncodeError
from prep.formats.images.base import ImageInfo, boxes, gray_or_rgb

JP2_MAGIC = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
J2K_MAGIC = b"\xff\x4f\xff\x51"  # SOC then SIZ


def _siz(data: bytes, pos: int, fmt: str) -> ImageInfo:
    """The codestream's SIZ segment: the decoder's size is its image area, its channels the components."""
    if data[pos : pos + 4] != J2K_MAGIC:
        raise EncodeError(f"corrupt {fmt}: no SOC/SIZ markers where the codestream starts")
    x1, y1, x0, y0 = struct.unpack_from(">IIII", data, pos + 8)
    (components,) = struct.unpack_from(">H", data, pos + 40)
    return ImageInfo(fmt, y1 - y0, x1 - x0, components, gray_or_rgb(components))


def read_jp2(data: bytes) -> ImageInfo:
    header = None
    for kind, start, stop in boxes(data, 0, len(data)):
        if kind == b"jp2c":  # OpenJPEG takes the size from the codestream, whatever ihdr says
            return _siz(data, start, "jp2")
        if kind == b"jp2h":
            for child, cstart, _cstop in boxes(data, start, stop):
                if child == b"ihdr":
                    height, width, components = struct.unpack_from(">IIH", data, cstart)
                    header = ImageInfo("jp2", height, width, components, gray_or_rgb(components))
    if header is None:
        raise EncodeError("truncated jp2 header")
    return header  # no codestream: not decodable, but its declared size still goes through the checks


def read_j2k(data: bytes) -> ImageInfo:
    return _siz(data, 0, "j2k")
