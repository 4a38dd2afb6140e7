"""RawEncoder: the decoded pixels themselves, uint8 row-major."""

from __future__ import annotations

from prep.core.values import Encoded
from prep.encoders.base import Encoder
from prep.encoders.image import ImageEncoder
from prep.encoders.pixels import DEFAULT_MAX_PIXELS, cv2_module, opencv, shape_of


class RawEncoder(Encoder):
    """Decoded pixels as raw uint8 bytes, height x width x channels, RGB order for colour."""

    cpu_bound = True
    needs_shape = True

    def __init__(
        self, resize: int | None = None, channels: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, exif: str = "apply", reduce: str = "dct"
    ) -> None:
        self._image = ImageEncoder("png", resize=resize, channels=channels, max_pixels=max_pixels, exif=exif, reduce=reduce)
        self.max_pixels = max_pixels

    def check(self, source) -> None:
        pass

    def describe(self) -> dict:
        # Explicit, because raw bytes say nothing about themselves (seed 004 read int64 pixels back as float64).
        return {"name": "raw", "dtype": "uint8", "layout": "height x width x channels", "channel_order": "RGB", "resize": self._image.resize,
                "exif": self._image.exif, "reduce": self._image.reduce}

    def encode(self, payload) -> Encoded:
        pixels, oriented, reoriented, denominator = self._image.pixels(payload)
        if pixels.ndim == 3:
            with opencv("convert BGR to RGB"):
                pixels = cv2_module().cvtColor(pixels, cv2_module().COLOR_BGR2RGB)
        height, width, channels = shape_of(pixels)
        return Encoded(pixels.tobytes(), "raw", height, width, channels, "GRAY" if channels == 1 else "RGB", oriented, reoriented, denominator)
