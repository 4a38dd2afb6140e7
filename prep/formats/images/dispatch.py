"""Sniffs an image's format from its magic bytes and hands the data to that format's header reader."""

from __future__ import annotations

import struct

from prep.core.errors import EncodeError
from prep.formats.images import avif, bmp, gif, hdr, jpeg, jpeg2000, netpbm, png, ras, tiff, webp
from prep.formats.images.base import MAX_SIDE, WHITESPACE, ImageInfo

# Formats with a known magic but no decoder in this build (or no size in a header): named in the message.
_UNREAD_MAGIC = {b"v/1\x01": "exr", b"qoif": "qoi", b"\xff\x0a": "jxl", b"\x00\x00\x00\x0cJXL ": "jxl"}

_READERS = {
    "jpeg": jpeg.read_jpeg, "png": png.read_png, "gif": gif.read_gif, "bmp": bmp.read_bmp, "webp": webp.read_webp,
    "tiff": tiff.read_tiff, "jp2": jpeg2000.read_jp2, "j2k": jpeg2000.read_j2k, "pnm": netpbm.read_pnm,
    "pam": netpbm.read_pam, "pfm": netpbm.read_pfm, "ras": ras.read_ras, "hdr": hdr.read_hdr, "avif": avif.read_avif,
}  # fmt: skip
HEADER_FORMATS = frozenset(_READERS)  # formats whose shape is read without decoding
# The formats whose end can be found without decoding; a cut one is refused before a decoder half-reads it.
_INCOMPLETE = {"jpeg": jpeg.missing_eoi, "png": png.missing_iend, "gif": gif.missing_trailer, "webp": webp.missing_data}


def sniff_format(data: bytes) -> str | None:
    """The real format by magic bytes (ImageNet has a PNG named .JPEG), or None when unknown."""
    head = bytes(data[:16])
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == png.PNG_MAGIC:
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:12] == jpeg2000.JP2_MAGIC:
        return "jp2"
    if head[:4] == jpeg2000.J2K_MAGIC:
        return "j2k"
    if len(head) >= 3 and head[0] == 0x50 and head[2] in WHITESPACE:  # "P" + kind + whitespace, as OpenCV checks
        kind = head[1:2]
        if kind in b"123456":
            return "pnm"
        if kind == b"7":
            return "pam"
        if kind in (b"f", b"F"):
            return "pfm"
    if head[:4] == b"\x59\xa6\x6a\x95":
        return "ras"
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        return "hdr"
    if head[4:8] == b"ftyp" and avif.is_avif(data):
        return "avif"
    for magic, name in _UNREAD_MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def read_header(data: bytes) -> ImageInfo:
    """Format and shape from the header; raises EncodeError with the reason when it cannot be read."""
    fmt = sniff_format(data)
    if fmt is None:
        if not data:
            raise EncodeError("empty file")
        raise EncodeError(f"not a known image format (starts with {bytes(data[:8]).hex()})")
    reader = _READERS.get(fmt)
    if reader is None:
        raise EncodeError(f"{fmt}: size cannot be read before decoding")
    if not isinstance(data, bytes):
        data = bytes(data)
    try:
        info = reader(data)
    except (struct.error, IndexError, ValueError, OverflowError):  # a field or offset beyond the end of the data
        raise EncodeError(f"truncated {fmt} header") from None
    if info.height <= 0 or info.width <= 0:
        raise EncodeError(f"{fmt} header gives an empty size {info.width}x{info.height}")
    if info.height > MAX_SIDE or info.width > MAX_SIDE:
        raise EncodeError(f"{fmt} header gives an absurd size {info.width}x{info.height}")
    return info


def check_complete(data: bytes, fmt: str) -> None:
    """Raises EncodeError when a JPEG, PNG, GIF or WebP file is cut short; other formats are not checked.

    Bytes after the end of the image (padding, an appended second JPEG, maker data) are fine: decoders stop there.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    try:
        reason = _INCOMPLETE[fmt](data) if fmt in _INCOMPLETE else None
    except (struct.error, IndexError, OverflowError):
        reason = f"truncated {fmt}: the file ends inside a header"
    if reason:
        raise EncodeError(reason)


def is_complete(data: bytes, fmt: str) -> bool:
    try:
        check_complete(data, fmt)
    except EncodeError:
        return False
    return True
