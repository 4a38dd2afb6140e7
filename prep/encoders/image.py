"""ImageEncoder: decode, optionally resize, and encode again as JPEG, PNG, TIFF, WebP or BMP."""

from __future__ import annotations

from prep.core.errors import ConfigError, EncodeError
from prep.core.values import Encoded
from prep.encoders.base import Encoder
from prep.encoders.pixels import (
    DEFAULT_MAX_PIXELS,
    check_exif,
    check_max_pixels,
    check_reduce,
    cv2_module,
    decode_scaled,
    opencv,
    shape_of,
    orient,
    resize_reduced,
    resize_shorter_side,
)

# OpenCV's file extension for each output format, and the formats each encoder accepts.
_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "tiff": ".tiff", "webp": ".webp", "bmp": ".bmp"}
_STORES_GRAY = {"jpeg", "png", "tiff", "bmp"}  # OpenCV's WebP encoder turns gray into 3 channels

class ImageEncoder(Encoder):
    """Decode (or take the pixel array) and encode with OpenCV: encoder=jpeg|png|tiff|webp."""

    # Decoding and encoding dominate and release the GIL: shard tasks encode on several threads, so the
    # last shard of a run still uses every core.
    cpu_bound = True

    def __init__(
        self,
        format: str = "png",
        quality: int = 95,
        png_compression: int = 3,
        resize: int | None = None,
        channels: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        exif: str = "apply",
        reduce: str = "dct",
    ) -> None:
        if format not in _EXTENSIONS:
            raise ConfigError(f"encoder.format={format!r}: choose one of {sorted(_EXTENSIONS)}")
        if not 0 <= quality <= 100:
            raise ConfigError(f"encoder.quality={quality}: must be 0..100")
        if not 0 <= png_compression <= 9:
            raise ConfigError(f"encoder.png_compression={png_compression}: must be 0..9")
        if resize is not None and resize < 1:
            raise ConfigError(f"encoder.resize={resize}: must be a positive size in pixels, or null")
        if channels not in (None, 1, 3):
            raise ConfigError(f"encoder.channels={channels}: must be 1 (grayscale), 3 (colour) or null (as the source)")
        check_max_pixels(max_pixels)
        check_exif(exif)
        check_reduce(reduce)
        self.format = format
        self.quality = quality
        self.png_compression = png_compression
        self.resize = resize
        self.channels = channels
        self.max_pixels = max_pixels
        self.exif = exif
        self.reduce = reduce

    def check(self, source) -> None:
        pass

    def describe(self) -> dict:
        return {
            "name": self.format, "quality": self.quality, "png_compression": self.png_compression, "resize": self.resize,
            "channels": self.channels, "exif": self.exif, "reduce": self.reduce,
        }  # fmt: skip

    def pixels(self, payload):
        """(pixels, oriented, reoriented, denominator): decoded (at 1/denominator scale, see reduction), turned
        upright when exif=apply and the file asks, resized. What the shard tasks run, and the benchmark measures."""
        decoded = decode_scaled(payload, self.channels, self.max_pixels, self.resize if self.reduce == "dct" else None)
        pixels = decoded.pixels
        if decoded.denominator > 1:  # resized before turning: the reduced image's partial edge is its bottom right
            pixels = resize_reduced(pixels, self.resize, decoded.height, decoded.width, decoded.denominator)
        reoriented = self.exif == "apply" and decoded.orientation != 1
        if reoriented:
            pixels = orient(pixels, decoded.orientation)
        if decoded.denominator == 1:  # as before encoder.reduce, byte for byte
            pixels = resize_shorter_side(pixels, self.resize)
        return pixels, decoded.orientation != 1, reoriented, decoded.denominator

    def _params(self) -> list[int]:
        cv2 = cv2_module()
        if self.format == "jpeg":
            return [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        if self.format == "webp":
            return [cv2.IMWRITE_WEBP_QUALITY, max(1, self.quality)]
        if self.format == "png":
            return [cv2.IMWRITE_PNG_COMPRESSION, self.png_compression]
        return []

    def encode(self, payload) -> Encoded:
        cv2 = cv2_module()
        pixels, oriented, reoriented, denominator = self.pixels(payload)
        if pixels.ndim == 2 and self.format not in _STORES_GRAY:  # so the record says what the file holds
            pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
        with opencv(f"encode {pixels.shape[1]}x{pixels.shape[0]} pixels as {self.format}"):
            ok, buf = cv2.imencode(_EXTENSIONS[self.format], pixels, self._params())
        if not ok:
            raise EncodeError(f"OpenCV could not encode {pixels.shape} pixels as {self.format}")
        height, width, channels = shape_of(pixels)
        space = "GRAY" if channels == 1 else "RGB"
        # OpenCV's encoders write no EXIF: an EXIF-aware reader cannot turn these pixels a second time.
        return Encoded(buf.tobytes(), self.format, height, width, channels, space, oriented, reoriented, denominator)
