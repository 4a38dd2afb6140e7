"""Encoders: turn what a source read (file bytes or an RGB pixel array) into the bytes a record stores."""

from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple

from prep.errors import ConfigError, EncodeError
from prep.headers import check_complete, read_header
from prep.stages import Encoded

# OpenCV's file extension for each output format, and the formats each encoder accepts.
_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "tiff": ".tiff", "webp": ".webp", "bmp": ".bmp"}
_STORES_GRAY = {"jpeg", "png", "tiff", "bmp"}  # OpenCV's WebP encoder turns gray into 3 channels
DEFAULT_MAX_PIXELS = 20_000 * 20_000
# encoder.exif: "apply" turns EXIF-oriented JPEGs upright (what a photo viewer shows; TensorFlow's and DALI's
# decoders ignore the tag, so phone photos would otherwise train sideways); "ignore" keeps the stored pixels.
EXIF_MODES = ("apply", "ignore")
# encoder.reduce: "dct" lets libjpeg decode a JPEG at 1/2, 1/4 or 1/8 of its size (in the DCT domain, before the
# full-size pixels exist) when that still covers encoder.resize, and INTER_AREA does the rest: 1.5x the images per
# CPU-second for ImageNet-sized photos to 128, 3-6x for 12 MP photos to 256, for a mean difference of about 1.4
# grey levels (benchmarks/bench_resize.py); "none" decodes every image whole, then scales: the exact bytes of before.
REDUCE_MODES = ("dct", "none")
DENOMINATORS = (1, 2, 4, 8)  # the scales libjpeg decodes at (1/1 .. 1/8), as summary.json counts them


def _cv2():
    import cv2

    return cv2


@contextmanager
def _opencv(doing: str):
    """OpenCV's own errors (its size limits, a failed allocation, a decoder's assertion) as EncodeErrors."""
    try:
        yield
    except _cv2().error as e:
        detail = str(e).strip().splitlines()[-1] if str(e).strip() else "cv2.error"
        raise EncodeError(f"OpenCV could not {doing}: {detail.partition(' error: ')[2] or detail}") from None
    except MemoryError:
        raise EncodeError(f"not enough memory to {doing}") from None


def _check_max_pixels(max_pixels: int) -> None:
    if max_pixels < 1:
        raise ConfigError(f"max_pixels={max_pixels}: must be a positive number of pixels")


def _check_exif(exif: str) -> None:
    if exif not in EXIF_MODES:
        raise ConfigError(
            f"encoder.exif={exif!r}: choose apply (turn EXIF-oriented JPEGs upright) or ignore (keep the stored pixels as they are)"
        )


def _check_reduce(reduce: str) -> None:
    if reduce not in REDUCE_MODES:
        raise ConfigError(
            f"encoder.reduce={reduce!r}: choose dct (JPEGs decoded at 1/2, 1/4 or 1/8 scale when still >= resize, then scaled) "
            "or none (every image decoded whole, then scaled)"
        )


def reduction(height: int, width: int, size: int | None) -> int:
    """The denominator (1, 2, 4 or 8) of the smallest scale libjpeg can decode an image of this size at while the
    image's shorter side still covers >= size pixels; 1 when no resize is asked for or it is not larger than size.

    libjpeg rounds a reduced side up (jpeg_calc_output_dimensions: ceil(side / denominator)), but that last row
    or column holds only what is left of the image (one row of 255 at 1/2 is 127.5 rows of picture in 128): it
    is not counted, so a reduced image is never scaled up. The shorter side is the same whichever way EXIF turns.
    """
    shorter = min(height, width)
    if not size or shorter <= size:
        return 1
    for denominator in (8, 4, 2):
        if shorter >= size * denominator:
            return denominator
    return 1


def _guard(height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise EncodeError(f"{width}x{height} is over max_pixels={max_pixels} (a decompression-bomb guard; raise it to convert)")


def decode(payload, channels: int | None, max_pixels: int):
    """Pixels in OpenCV's order (BGR, or one gray plane) from file bytes or an RGB/gray array.

    channels: None keeps gray as gray and colour as colour (alpha dropped); 1 or 3 forces it.
    EXIF orientation is never applied: these are the stored pixels, the ones a record's height and width give.
    """
    return _decode(payload, channels, max_pixels).pixels


class _Decoded(NamedTuple):
    pixels: object  # numpy array, OpenCV's channel order
    orientation: int  # the EXIF orientation the file asks for (1 for pixel arrays and other formats)
    denominator: int  # 1, or 2, 4, 8: decoded by libjpeg at that fraction of its size
    height: int  # the stored (unturned) image's full size, whatever it was decoded at
    width: int


def _decode(payload, channels: int | None, max_pixels: int, resize: int | None = None) -> _Decoded:
    """decode's pixels, and with resize a JPEG decoded at the smallest libjpeg scale still >= resize (see reduction)."""
    cv2 = _cv2()
    import numpy as np

    if isinstance(payload, (bytes, bytearray, memoryview)):
        data = bytes(payload)
        # The header's size is checked before any decoder sees the bytes: a decoder allocates the whole image
        # first, so a few crafted bytes would otherwise cost gigabytes. No header reader, no decoding.
        info = read_header(data)
        _guard(info.height, info.width, max_pixels)
        check_complete(data, info.format)  # a cut file is skipped as "truncated", not as "cannot decode"
        flag = {None: cv2.IMREAD_ANYCOLOR, 1: cv2.IMREAD_GRAYSCALE, 3: cv2.IMREAD_COLOR}[channels]
        # OpenCV would turn JPEGs by their EXIF tag for these flags (not for IMREAD_UNCHANGED): prep applies
        # the orientation itself, when encoder.exif says so, so it never depends on OpenCV's per-flag habits.
        flag |= cv2.IMREAD_IGNORE_ORIENTATION
        buffer = np.frombuffer(data, np.uint8)
        denominator = reduction(info.height, info.width, resize) if info.format == "jpeg" else 1
        if denominator > 1:
            # OpenCV hands the scale to libjpeg (scale_denom) only for JPEG; the REDUCED_* bits are the same for
            # gray, colour and any-colour reads, so they are added to the channel flag.
            reduced_flag = flag | {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}[denominator]
            with _opencv(f"decode this {info.format} ({info.width}x{info.height}) at 1/{denominator} scale"):
                pixels = cv2.imdecode(buffer, reduced_flag)
            expected = (-(-info.height // denominator), -(-info.width // denominator))  # libjpeg rounds up
            if pixels is not None and pixels.shape[:2] == expected:
                return _Decoded(pixels, info.orientation, denominator, info.height, info.width)
            # a JPEG libjpeg will not scale (or one whose header disagrees with its frame): decode it whole
        with _opencv(f"decode this {info.format} ({info.width}x{info.height})"):
            pixels = cv2.imdecode(buffer, flag)
        if pixels is None:
            raise EncodeError(f"cannot decode the image data ({info.format})")
        _guard(pixels.shape[0], pixels.shape[1], max_pixels)
        return _Decoded(pixels, info.orientation, 1, pixels.shape[0], pixels.shape[1])
    pixels = _decode_array(payload, channels)
    return _Decoded(pixels, 1, 1, pixels.shape[0], pixels.shape[1])


def _decode_array(payload, channels: int | None):
    cv2 = _cv2()
    import numpy as np

    pixels = np.ascontiguousarray(payload)
    if pixels.dtype != np.uint8:
        raise EncodeError(f"pixel array of {pixels.dtype}: expected uint8")
    if pixels.size == 0:
        raise EncodeError(f"pixel array of shape {pixels.shape}: no pixels")
    gray = pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 1)
    if gray:
        pixels = pixels.reshape(pixels.shape[0], pixels.shape[1])
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR) if channels == 3 else pixels
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise EncodeError(f"pixel array of shape {pixels.shape}: expected HxW, HxWx3 or HxWx4")
    # Arrays arrive in RGB order; OpenCV encodes BGR, so convert or the colours swap.
    code = cv2.COLOR_RGB2GRAY if channels == 1 else cv2.COLOR_RGB2BGR
    if pixels.shape[2] == 4:
        code = cv2.COLOR_RGBA2GRAY if channels == 1 else cv2.COLOR_RGBA2BGR
    with _opencv(f"convert a pixel array of shape {pixels.shape}"):
        return cv2.cvtColor(pixels, code)


def orient(pixels, orientation: int):
    """The pixels turned upright for an EXIF orientation (1..8), as a viewer (or Pillow's exif_transpose) shows them."""
    import numpy as np

    if orientation in (5, 6, 7, 8):  # a quarter turn: rows become columns
        pixels = pixels.swapaxes(0, 1)
    flip_rows, flip_columns = {2: (False, True), 3: (True, True), 4: (True, False), 5: (False, False),
                               6: (False, True), 7: (True, True), 8: (True, False)}.get(orientation, (False, False))  # fmt: skip
    if flip_rows:
        pixels = pixels[::-1]
    if flip_columns:
        pixels = pixels[:, ::-1]
    return np.ascontiguousarray(pixels)


def resized_size(height: int, width: int, size: int | None) -> tuple[int, int] | None:
    """(width, height) with the shorter side scaled to `size`, aspect kept; None when no scaling (never upsamples)."""
    shorter = min(height, width)
    if not size or shorter <= size:
        return None
    scale = size / shorter
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_shorter_side(pixels, size: int | None):
    """Scale so the shorter side is `size`, keeping the aspect ratio; never upsamples."""
    height, width = pixels.shape[:2]
    new = resized_size(height, width, size)
    if new is None:
        return pixels
    with _opencv(f"resize {width}x{height} to {new[0]}x{new[1]}"):
        return _cv2().resize(pixels, new, interpolation=_cv2().INTER_AREA)


def resize_reduced(pixels, size: int, height: int, width: int, denominator: int):
    """libjpeg's 1/denominator decode of a height x width image, scaled to the size a full decode resizes to.

    The reduced image's last row and column stand for only what is left of the image (ceil(side / denominator)
    pixels hold side / denominator of picture): the scale factors come from that true extent, and the one row or
    column the resize makes past the image's edge is cut off, so nothing is stretched.
    """
    new_width, new_height = resized_size(height, width, size)
    fx, fy = new_width * denominator / width, new_height * denominator / height
    if fx == fy == 1 and pixels.shape[:2] == (new_height, new_width):
        return pixels
    with _opencv(f"resize {pixels.shape[1]}x{pixels.shape[0]} to {new_width}x{new_height}"):
        # dsize None: OpenCV sizes the output from fx, fy (>= the target, as ceil >= the true extent) and maps
        # pixels with exactly fx, fy (given a dsize, it would take the factors from the rounded-up sizes).
        out = _cv2().resize(pixels, None, fx=fx, fy=fy, interpolation=_cv2().INTER_AREA)
    if out.shape[:2] == (new_height, new_width):
        return out
    import numpy as np

    return np.ascontiguousarray(out[:new_height, :new_width])


def _shape(pixels) -> tuple[int, int, int]:
    return pixels.shape[0], pixels.shape[1], 1 if pixels.ndim == 2 else pixels.shape[2]


class ImageEncoder:
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
        _check_max_pixels(max_pixels)
        _check_exif(exif)
        _check_reduce(reduce)
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
        decoded = _decode(payload, self.channels, self.max_pixels, self.resize if self.reduce == "dct" else None)
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
        cv2 = _cv2()
        if self.format == "jpeg":
            return [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        if self.format == "webp":
            return [cv2.IMWRITE_WEBP_QUALITY, max(1, self.quality)]
        if self.format == "png":
            return [cv2.IMWRITE_PNG_COMPRESSION, self.png_compression]
        return []

    def encode(self, payload) -> Encoded:
        cv2 = _cv2()
        pixels, oriented, reoriented, denominator = self.pixels(payload)
        if pixels.ndim == 2 and self.format not in _STORES_GRAY:  # so the record says what the file holds
            pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
        with _opencv(f"encode {pixels.shape[1]}x{pixels.shape[0]} pixels as {self.format}"):
            ok, buf = cv2.imencode(_EXTENSIONS[self.format], pixels, self._params())
        if not ok:
            raise EncodeError(f"OpenCV could not encode {pixels.shape} pixels as {self.format}")
        height, width, channels = _shape(pixels)
        space = "GRAY" if channels == 1 else "RGB"
        # OpenCV's encoders write no EXIF: an EXIF-aware reader cannot turn these pixels a second time.
        return Encoded(buf.tobytes(), self.format, height, width, channels, space, oriented, reoriented, denominator)


class RawEncoder:
    """Decoded pixels as raw uint8 bytes, height x width x channels, RGB order for colour."""

    cpu_bound = True

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
            with _opencv("convert BGR to RGB"):
                pixels = _cv2().cvtColor(pixels, _cv2().COLOR_BGR2RGB)
        height, width, channels = _shape(pixels)
        return Encoded(pixels.tobytes(), "raw", height, width, channels, "GRAY" if channels == 1 else "RGB", oriented, reoriented, denominator)


class PassthroughEncoder:
    """Keeps the file's bytes untouched; format and shape come from the header, pixels are never decoded.

    convert_to: re-encode only the inputs that are not already in that format, or are CMYK
    (what TensorFlow's classic ImageNet converter did for ImageNet's PNG and CMYK files).
    exif: apply re-encodes only JPEGs with an EXIF orientation other than 1, upright, as JPEG at `quality`
    (no EXIF left); ignore keeps their bytes, and their height and width are the stored (unturned) pixels'.
    """

    def __init__(self, convert_to: str | None = None, quality: int = 95, max_pixels: int = DEFAULT_MAX_PIXELS, exif: str = "apply") -> None:
        _check_max_pixels(max_pixels)
        _check_exif(exif)
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
        _guard(info.height, info.width, self.max_pixels)
        check_complete(payload, info.format)
        if self._convert is not None and (info.format != self.convert_to or info.colorspace == "CMYK"):
            return self._convert.encode(payload)
        oriented = info.orientation != 1
        if oriented and self._upright is not None:
            return self._upright.encode(payload)
        return Encoded(payload, info.format, info.height, info.width, info.channels, info.colorspace, oriented)
