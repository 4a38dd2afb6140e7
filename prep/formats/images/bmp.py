"""BMP: the DIB header for size, and the palette or bit depth for the channels."""

from __future__ import annotations

import struct

from prep.core.errors import EncodeError
from prep.formats.images.base import ImageInfo, gray_or_rgb


def read_bmp(data: bytes) -> ImageInfo:
    (size,) = struct.unpack_from("<i", data, 14)
    if size == 12:  # OS/2 core header; OpenCV decodes these as gray
        width, height, _planes, bits = struct.unpack_from("<HHHH", data, 18)
        return ImageInfo("bmp", height, width, 1, "GRAY")
    if size < 36:
        raise EncodeError(f"corrupt BMP: header size {size}")
    width, height, _planes, bits, compression = struct.unpack_from("<iiHHI", data, 18)
    if bits <= 8:  # palette: gray unless one of its first 2**bits entries has colour
        (used,) = struct.unpack_from("<I", data, 46)
        if used > 256:
            raise EncodeError(f"corrupt BMP: {used} palette colours")
        start = 14 + size
        palette = data[start : start + 4 * min(used or 1 << bits, 1 << bits)]
        palette = palette[: len(palette) // 4 * 4]
        blue, green, red = palette[0::4], palette[1::4], palette[2::4]
        channels = 3 if blue != green or blue != red else 1
    else:
        channels = 4 if bits == 32 and compression != 0 else 3  # alpha only from BITFIELDS masks
    return ImageInfo("bmp", abs(height), width, channels, gray_or_rgb(channels))
