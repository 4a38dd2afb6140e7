"""JPEG: the frame header (SOF) for size and channels, EXIF orientation, and the walk to the EOI marker."""

from __future__ import annotations

import re
import struct

from prep.core.errors import EncodeError
from prep.formats.images.base import ImageInfo

# SOFn markers carry the frame header; C4 (DHT), C8 (reserved) and CC (DAC) share the range but are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# A marker where the walk may be: FF then anything but a stuffed 00, a restart marker or another FF (fill).
# Entropy-coded data can hold no other FF pair, so this finds a scan's end at C speed.
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_TRUNCATED = "truncated jpeg: the data ends before its EOI marker"


def read_jpeg(data: bytes) -> ImageInfo:
    pos = 2
    end = len(data)
    orientation = 0  # 0 until an Exif APP1 segment was read: the first one counts, as for libexif and Pillow
    while pos < end:
        if data[pos] != 0xFF:
            raise EncodeError(f"corrupt JPEG: expected a marker at byte {pos}")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            raise EncodeError("corrupt JPEG: no frame header before the image data")
        (length,) = struct.unpack_from(">H", data, pos)
        if marker in _SOF:
            _precision, height, width, components = struct.unpack_from(">BHHB", data, pos + 2)
            if height == 0:
                raise EncodeError("JPEG gives its height in a DNL marker; not read without decoding")
            # OpenCV (like TensorFlow) converts CMYK/YCCK to 3 channels; the colorspace still says CMYK.
            space = {1: "GRAY", 3: "RGB", 4: "CMYK"}.get(components, "")
            return ImageInfo("jpeg", height, width, 1 if components == 1 else 3, space, orientation or 1)
        if length < 2:
            raise EncodeError(f"corrupt JPEG: segment length {length} at byte {pos}")
        if marker == 0xE1 and not orientation and data[pos + 2 : pos + 8] == b"Exif\x00\x00":
            orientation = _exif_orientation(data, pos + 8, min(pos + length, end))
        pos += length
    raise EncodeError("truncated JPEG header")


_EXIF_ORIENTATION = 274
_EXIF_INTEGERS = {3: "H", 4: "I"}  # SHORT as the standard says; LONG as some writers put it


def _exif_orientation(data: bytes, start: int, stop: int) -> int:
    """The orientation tag of IFD0 in the TIFF structure at data[start:stop] (an Exif APP1 payload).

    Any broken, truncated or out-of-range EXIF gives 1 (upright): a bad tag never costs the image.
    """
    tiff = data[start:stop]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    magic, ifd = struct.unpack_from(order + "HI", tiff, 2)
    if magic != 42 or ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for pos in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
        tag, kind, number = struct.unpack_from(order + "HHI", tiff, pos)
        if tag == _EXIF_ORIENTATION:
            if kind not in _EXIF_INTEGERS or number < 1:
                return 1
            (value,) = struct.unpack_from(order + _EXIF_INTEGERS[kind], tiff, pos + 8)
            return value if 1 <= value <= 8 else 1
    return 1


def missing_eoi(data: bytes) -> str | None:
    """Walks markers to the EOI that ends the image: segments by their length (so an EXIF thumbnail's EOI inside
    APP1 is skipped), entropy-coded data by a regex search, through every scan of a progressive file."""
    end = len(data)
    pos = 2
    frame = components = 0
    first_scan = True
    while True:
        found = _MARKER.search(data, pos)
        if found is None:
            return _TRUNCATED
        marker = data[found.end() - 1]
        pos = found.end()
        if marker == 0xD9:
            return None
        if marker == 0x01:  # TEM: no length
            continue
        if pos + 2 > end:
            return _TRUNCATED
        length = data[pos] << 8 | data[pos + 1]
        if length < 2:
            return f"corrupt jpeg: marker ff{marker:02x} at byte {pos - 2} has length {length}"
        if marker in _SOF and pos + 8 <= end:
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
            return _TRUNCATED
