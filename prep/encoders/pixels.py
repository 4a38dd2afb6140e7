"""Pixels: decoding (at a libjpeg scale when resizing), EXIF orientation and resizing, shared by the encoders."""

from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple

from prep.core.errors import ConfigError, EncodeError
from prep.formats.images import check_complete, read_header

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

def cv2_module():
    import cv2

    return cv2


@contextmanager
def opencv(doing: str):
    """OpenCV's own errors (its size limits, a failed allocation, a decoder's assertion) as EncodeErrors."""
    try:
        yield
    except cv2_module().error as e:
        detail = str(e).strip().splitlines()[-1] if str(e).strip() else "cv2.error"
        raise EncodeError(f"OpenCV could not {doing}: {detail.partition(' error: ')[2] or detail}") from None
    except MemoryError:
        raise EncodeError(f"not enough memory to {doing}") from None


def check_max_pixels(max_pixels: int) -> None:
    if max_pixels < 1:
        raise ConfigError(f"max_pixels={max_pixels}: must be a positive number of pixels")


def check_exif(exif: str) -> None:
    if exif not in EXIF_MODES:
        raise ConfigError(
            f"encoder.exif={exif!r}: choose apply (turn EXIF-oriented JPEGs upright) or ignore (keep the stored pixels as they are)"
        )


def check_reduce(reduce: str) -> None:
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


def guard_size(height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise EncodeError(f"{width}x{height} is over max_pixels={max_pixels} (a decompression-bomb guard; raise it to convert)")


def decode(payload, channels: int | None, max_pixels: int):
    """Pixels in OpenCV's order (BGR, or one gray plane) from file bytes or an RGB/gray array.

    channels: None keeps gray as gray and colour as colour (alpha dropped); 1 or 3 forces it.
    EXIF orientation is never applied: these are the stored pixels, the ones a record's height and width give.
    """
    return decode_scaled(payload, channels, max_pixels).pixels


class _Decoded(NamedTuple):
    pixels: object  # numpy array, OpenCV's channel order
    orientation: int  # the EXIF orientation the file asks for (1 for pixel arrays and other formats)
    denominator: int  # 1, or 2, 4, 8: decoded by libjpeg at that fraction of its size
    height: int  # the stored (unturned) image's full size, whatever it was decoded at
    width: int


def decode_scaled(payload, channels: int | None, max_pixels: int, resize: int | None = None) -> _Decoded:
    """decode's pixels, and with resize a JPEG decoded at the smallest libjpeg scale still >= resize (see reduction)."""
    cv2 = cv2_module()
    import numpy as np

    if isinstance(payload, (bytes, bytearray, memoryview)):
        data = bytes(payload)
        # The header's size is checked before any decoder sees the bytes: a decoder allocates the whole image
        # first, so a few crafted bytes would otherwise cost gigabytes. No header reader, no decoding.
        info = read_header(data)
        guard_size(info.height, info.width, max_pixels)
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
            with opencv(f"decode this {info.format} ({info.width}x{info.height}) at 1/{denominator} scale"):
                pixels = cv2.imdecode(buffer, reduced_flag)
            expected = (-(-info.height // denominator), -(-info.width // denominator))  # libjpeg rounds up
            if pixels is not None and pixels.shape[:2] == expected:
                return _Decoded(pixels, info.orientation, denominator, info.height, info.width)
            # a JPEG libjpeg will not scale (or one whose header disagrees with its frame): decode it whole
        with opencv(f"decode this {info.format} ({info.width}x{info.height})"):
            pixels = cv2.imdecode(buffer, flag)
        if pixels is None:
            raise EncodeError(f"cannot decode the image data ({info.format})")
        guard_size(pixels.shape[0], pixels.shape[1], max_pixels)
        return _Decoded(pixels, info.orientation, 1, pixels.shape[0], pixels.shape[1])
    pixels = _decode_array(payload, channels)
    return _Decoded(pixels, 1, 1, pixels.shape[0], pixels.shape[1])


def _decode_array(payload, channels: int | None):
    cv2 = cv2_module()
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
    with opencv(f"convert a pixel array of shape {pixels.shape}"):
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
    with opencv(f"resize {width}x{height} to {new[0]}x{new[1]}"):
        return cv2_module().resize(pixels, new, interpolation=cv2_module().INTER_AREA)


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
    with opencv(f"resize {pixels.shape[1]}x{pixels.shape[0]} to {new_width}x{new_height}"):
        # dsize None: OpenCV sizes the output from fx, fy (>= the target, as ceil >= the true extent) and maps
        # pixels with exactly fx, fy (given a dsize, it would take the factors from the rounded-up sizes).
        out = cv2_module().resize(pixels, None, fx=fx, fy=fy, interpolation=cv2_module().INTER_AREA)
    if out.shape[:2] == (new_height, new_width):
        return out
    import numpy as np

    return np.ascontiguousarray(out[:new_height, :new_width])


def shape_of(pixels) -> tuple[int, int, int]:
    return pixels.shape[0], pixels.shape[1], 1 if pixels.ndim == 2 else pixels.shape[2]
