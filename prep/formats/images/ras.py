"""Sun raster: size and depth from the header, and gray or colour from the colour map."""

from __future__ import annotations

import struct

from prep.formats.images.base import ImageInfo, gray_or_rgb


def read_ras(data: bytes) -> ImageInfo:
    width, height, depth, _length, _kind, map_type, map_length = struct.unpack_from(">iiiiiii", data, 4)
    channels = 3 if depth > 8 else 1
    if depth <= 8 and map_type == 1 and map_length > 0:  # a colour map: colour unless every entry is gray
        third = map_length // 3
        red, green, blue = data[32 : 32 + third], data[32 + third : 32 + 2 * third], data[32 + 2 * third : 32 + 3 * third]
        channels = 3 if red != green or green != blue else 1
    return ImageInfo("ras", height, width, channels, gray_or_rgb(channels))
