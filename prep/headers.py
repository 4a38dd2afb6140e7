"""Image format, size and channels read from file headers by magic bytes, without decoding pixels."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from prep.errors import EncodeError

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_SIDE = 2**31 - 1  # sizes are C ints: a larger length or side is corrupt
# SOFn markers carry the frame header; C4 (DHT), C8 (reserved) and CC (DAC) share the range but are not frames.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# A marker where the walk may be: FF then anything but a stuffed 00, a restart marker or another FF (fill).
# Entropy-coded data can hold no other FF pair, so this finds a scan's end at C speed.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_TRUNCATED = "truncated jpeg: the data ends before its EOI marker"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "jpeg", "png", "gif", "bmp", "webp", "tiff"
    height: int
    width: int
    channels: int
    colorspace: str = ""  # "CMYK" for 4-component JPEGs, otherwise "RGB" or "GRAY" where known


def sniff_format(data: bytes) -> str | None:
    """The real format by magic bytes (ImageNet has a PNG named .JPEG), or None when unknown."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == _PNG_MAGIC:
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def read_header(data: bytes) -> ImageInfo:
    """Format and shape from the header; raises EncodeError with the reason when it cannot be read."""
    fmt = sniff_format(data)
    if fmt is None:
        if not data:
            raise EncodeError("empty file")
        raise EncodeError(f"not a known image format (starts with {data[:8].hex()})")
    reader = _READERS.get(fmt)
    if reader is None:
        raise EncodeError(f"{fmt} headers are not read without decoding")
    try:
        info = reader(data)
    except (struct.error, IndexError):
        raise EncodeError(f"truncated {fmt} header") from None
    if info.height <= 0 or info.width <= 0:
        raise EncodeError(f"{fmt} header gives an empty size {info.width}x{info.height}")
    return info


def check_complete(data: bytes, fmt: str) -> None:
    """Raises EncodeError when a JPEG or PNG file is cut short; other formats are not checked.

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


def _jpeg(data: bytes) -> ImageInfo:
    pos = 2
    end = len(data)
    while pos < end:
        if data[pos] != 0xFF:
            raise EncodeError(f"corrupt JPEG: expected a marker at byte {pos}")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            raise EncodeError("corrupt JPEG: no frame header before the image data")
        (length,) = struct.unpack_from(">H", data, pos)
        if marker in _JPEG_SOF:
            _precision, height, width, components = struct.unpack_from(">BHHB", data, pos + 2)
            if height == 0:
                raise EncodeError("JPEG gives its height in a DNL marker; not read without decoding")
            space = {1: "GRAY", 3: "RGB", 4: "CMYK"}.get(components, "")
            return ImageInfo("jpeg", height, width, components, space)
        if length < 2:
            raise EncodeError(f"corrupt JPEG: segment length {length} at byte {pos}")
        pos += length
    raise EncodeError("truncated JPEG header")


def _jpeg_missing_eoi(data: bytes) -> str | None:
    """Walks markers to the EOI that ends the image: segments by their length (so an EXIF thumbnail's EOI inside
    APP1 is skipped), entropy-coded data by a regex search, through every scan of a progressive file."""
    end = len(data)
    pos = 2
    frame = components = 0
    first_scan = True
    while True:
        found = _JPEG_MARKER.search(data, pos)
        if found is None:
            return _JPEG_TRUNCATED
        marker = data[found.end() - 1]
        pos = found.end()
        if marker == 0xD9:
            return None
        if marker == 0x01:  # TEM: no length
            continue
        if pos + 2 > end:
            return _JPEG_TRUNCATED
        length = data[pos] << 8 | data[pos + 1]
        if length < 2:
            return f"corrupt jpeg: marker ff{marker:02x} at byte {pos - 2} has length {length}"
        if marker in _JPEG_SOF and pos + 8 <= end:
            frame, components = marker, data[pos + 7]
        if marker == 0xDA and first_scan:
            first_scan = False
            # Fast path: a sequential frame whose first scan holds every component has no other scan, and its
            # entropy data cannot contain FF D9; so a file ending (before zero padding) with FF D9 after this
            # scan header has its EOI there.
            if frame in (0xC0, 0xC1) and pos + 2 < end and data[pos + 2] == components:
                tail = data[-4096:]
                stop = end - (len(tail) - len(tail.rstrip(b"\x00")))
                if stop - 2 >= pos + length and data[stop - 2 : stop] == b"\xff\xd9":
                    return None
        pos += length
        if pos > end:
            return _JPEG_TRUNCATED


def _png_chunks(data: bytes):
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


def _png(data: bytes) -> ImageInfo:
    if data[12:16] != b"IHDR":
        raise EncodeError("corrupt PNG: first chunk is not IHDR")
    width, height, _depth, color_type = struct.unpack_from(">IIBB", data, 16)
    if color_type not in _PNG_CHANNELS:
        raise EncodeError(f"corrupt PNG: colour type {color_type}")
    channels = _PNG_CHANNELS[color_type]
    return ImageInfo("png", height, width, channels, "GRAY" if channels <= 2 else "RGB")


def _png_missing_iend(data: bytes) -> str | None:
    for kind, _start, stop in _png_chunks(data):
        if kind == b"IEND" and stop + 4 <= len(data):  # with its CRC
            return None
    return "truncated png: the chunks end before the IEND chunk"


def _gif(data: bytes) -> ImageInfo:
    width, height = struct.unpack_from("<HH", data, 6)
    return ImageInfo("gif", height, width, 3, "RGB")


def _bmp(data: bytes) -> ImageInfo:
    width, height, _planes, bits = struct.unpack_from("<iiHH", data, 18)
    return ImageInfo("bmp", abs(height), width, 4 if bits == 32 else 3, "RGB")


def _webp(data: bytes) -> ImageInfo:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack_from("<HH", data, 26)
        return ImageInfo("webp", height & 0x3FFF, width & 0x3FFF, 3, "RGB")
    if chunk == b"VP8L":
        (bits,) = struct.unpack_from("<I", data, 21)
        alpha = (bits >> 28) & 1
        return ImageInfo("webp", ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1, 4 if alpha else 3, "RGB")
    if chunk == b"VP8X":
        flags = data[20]
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageInfo("webp", height, width, 4 if flags & 0x10 else 3, "RGB")
    raise EncodeError(f"corrupt WebP: unknown chunk {chunk!r}")


_READERS = {"jpeg": _jpeg, "png": _png, "gif": _gif, "bmp": _bmp, "webp": _webp}
HEADER_FORMATS = frozenset(_READERS)  # formats whose shape is read without decoding
_INCOMPLETE = {"jpeg": _jpeg_missing_eoi, "png": _png_missing_iend}
