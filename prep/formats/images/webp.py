"""WebP: size and alpha from the VP8, VP8L or VP8X chunk, and the RIFF length for completeness."""

from __future__ import annotations

import struct

from prep.core.errors import EncodeError
from prep.formats.images.base import ImageInfo


def read_webp(data: bytes) -> ImageInfo:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise EncodeError("corrupt WebP: no VP8 start code")
        width, height = struct.unpack_from("<HH", data, 26)
        return ImageInfo("webp", height & 0x3FFF, width & 0x3FFF, 3, "RGB")
    if chunk == b"VP8L":
        (bits,) = struct.unpack_from("<I", data, 21)
        alpha = (bits >> 28) & 1
        return ImageInfo("webp", ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1, 4 if alpha else 3, "RGB")
    if chunk == b"VP8X":
        if len(data) < 30:
            raise IndexError
        flags = data[20]
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageInfo("webp", height, width, 4 if flags & 0x10 else 3, "RGB")
    raise EncodeError(f"corrupt WebP: unknown chunk {chunk!r}")


def missing_data(data: bytes) -> str | None:
    (size,) = struct.unpack_from("<I", data, 4)
    if 8 + size > len(data):  # libwebp refuses a RIFF chunk longer than the file
        return f"truncated webp: the RIFF header gives {8 + size} bytes, the file has {len(data)}"
    return None
