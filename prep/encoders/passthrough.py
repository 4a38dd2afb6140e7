"""PassthroughEncoder: the file's own bytes, the shape read from its header; decoded only to convert."""

from __future__ import annotations

from prep.core.errors import ConfigError
from prep.core.values import Encoded
from prep.encoders.base import Encoder
from prep.encoders.image import ImageEncoder
from prep.encoders.pixels import (
    DEFAULT_MAX_PIXELS,
    check_exif,
    check_max_pixels,
    guard_size,
)
from prep.formats.images import check_complete, read_header


class PassthroughEncoder(Encoder):
    """Keeps the file's bytes untouched; format and shape come from the header, pixels are never decoded.

    convert_to: re-encode only the inputs that are not already in that format, or are CMYK
    (what TensorFlow's classic ImageNet converter did for ImageNet's PNG and CMYK files).
    exif: apply re-encodes only JPEGs with an EXIF orientation other than 1, upright, as JPEG at `quality`
    (no EXIF left); ignore keeps their bytes, and their height and width are the stored (unturned) pixels'.
    """

    def __init__(self, convert_to: str | None = None, quality: int = 95, max_pixels: int = DEFAULT_MAX_PIXELS, exif: str = "apply") -> None:
        check_max_pixels(max_pixels)
        check_exif(exif)
        self.convert_to = convert_to or None
        self.max_pixels = max_pixels
        self.exif = exif
        self._convert = ImageEncoder(convert_to, quality=quality, channels=3, max_pixels=max_pixels, exif=exif) if convert_to else None
        # channels as the source: a gray JPEG stays gray when it is only turned upright
        self._upright = ImageEncoder("jpeg", quality=quality, max_pixels=max_pixels) if exif == "apply" else None

    def describe(self) -> dict:
        return {"name": "passthrough", "convert_to": self.convert_to, "exif": self.exif}

    def check(self, source) -> None:
        if source.payload != "bytes":
            raise ConfigError(
                f"encoder=passthrough keeps encoded files as they are, but {source.describe()} yields pixel arrays: "
                "choose encoder=png, jpeg or raw"
            )

    def encode(self, payload: bytes) -> Encoded:
        # Every format OpenCV decodes has a header reader, so nothing is decoded to learn a shape.
        info = read_header(payload)  # raises with the reason for empty, unknown or unreadable files
        guard_size(info.height, info.width, self.max_pixels)
        check_complete(payload, info.format)
        if self._convert is not None and (info.format != self.convert_to or info.colorspace == "CMYK"):
            return self._convert.encode(payload)
        oriented = info.orientation != 1
        if oriented and self._upright is not None:
            return self._upright.encode(payload)
        return Encoded(payload, info.format, info.height, info.width, info.channels, info.colorspace, oriented)
