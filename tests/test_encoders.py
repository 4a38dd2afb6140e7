"""Encoders: pass-through keeps bytes, OpenCV encoders keep colours, pixel order and shapes right."""

from __future__ import annotations

import resource
import time
import tracemalloc

import cv2
import numpy as np
import pytest
from conftest import cmyk_jpeg_bytes, crop, jpeg_bytes, png_bytes
from image_samples import declare_size, encoded_samples, jpeg_with_thumbnail, small_rgb, tiff_bytes

from prep.core.errors import ConfigError, EncodeError
from prep.encoders.image import ImageEncoder
from prep.encoders.passthrough import PassthroughEncoder
from prep.encoders.raw import RawEncoder
from prep.sources.digits import DigitsSource


def test_passthrough_keeps_the_bytes_and_reads_the_shape(photos):
    data = jpeg_bytes(crop(photos, 3))
    encoded = PassthroughEncoder().encode(data)
    assert encoded.data is data
    assert (encoded.format, encoded.channels, encoded.colorspace) == ("jpeg", 3, "RGB")
    assert (encoded.height, encoded.width) == crop(photos, 3).shape[:2]


def test_passthrough_rejects_truncated_and_garbage(photos):
    data = jpeg_bytes(crop(photos, 3))
    with pytest.raises(EncodeError, match="^truncated jpeg: the data ends before its EOI marker$"):
        PassthroughEncoder().encode(data[:-100])
    with pytest.raises(EncodeError, match="not a known image format"):
        PassthroughEncoder().encode(b"<html>not found</html>")
    with pytest.raises(EncodeError, match="over max_pixels"):
        PassthroughEncoder(max_pixels=100).encode(data)


def test_passthrough_convert_to_jpeg_reencodes_only_png_and_cmyk(photos):
    rgb = crop(photos, 4)
    encoder = PassthroughEncoder(convert_to="jpeg")
    plain = jpeg_bytes(rgb)
    assert encoder.encode(plain).data is plain
    for other in (png_bytes(rgb), cmyk_jpeg_bytes(rgb)):
        encoded = encoder.encode(other)
        assert encoded.format == "jpeg" and encoded.channels == 3
        decoded = cv2.imdecode(np.frombuffer(encoded.data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded.shape == (*rgb.shape[:2], 3)
        assert np.abs(decoded.astype(int) - rgb[..., ::-1]).mean() < 12  # same picture, BGR in OpenCV


def test_passthrough_refuses_pixel_arrays():
    with pytest.raises(ConfigError, match="choose encoder=png"):
        PassthroughEncoder().check(DigitsSource())


def test_png_of_an_rgb_array_keeps_red_red():
    red = np.zeros((4, 6, 3), np.uint8)
    red[..., 0] = 255  # RGB: red in channel 0
    encoded = ImageEncoder("png").encode(red)
    assert (encoded.height, encoded.width, encoded.channels) == (4, 6, 3)
    bgr = cv2.imdecode(np.frombuffer(encoded.data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr[0, 0].tolist() == [0, 0, 255]  # OpenCV decodes BGR: red is last


def test_png_is_lossless_for_photos_and_gray(photos):
    rgb = crop(photos, 5)
    bgr = cv2.imdecode(np.frombuffer(ImageEncoder("png").encode(rgb).data, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(bgr[..., ::-1], rgb)
    gray = rgb[..., 1].copy()
    encoded = ImageEncoder("png").encode(gray)
    assert encoded.channels == 1
    assert np.array_equal(cv2.imdecode(np.frombuffer(encoded.data, np.uint8), cv2.IMREAD_UNCHANGED), gray)


def test_jpeg_reencoding_is_deterministic_and_resize_keeps_aspect(photos):
    data = jpeg_bytes(photos[0])
    encoder = ImageEncoder("jpeg", quality=80, resize=100)
    first, second = encoder.encode(data), encoder.encode(data)
    assert first.data == second.data
    assert (first.height, first.width) == (100, round(640 * 100 / 427))


def test_grayscale_conversion(photos):
    encoded = ImageEncoder("png", channels=1).encode(crop(photos, 6))
    decoded = cv2.imdecode(np.frombuffer(encoded.data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert encoded.channels == 1 and decoded.ndim == 2


def test_raw_is_rgb_order():
    red = np.zeros((3, 5, 3), np.uint8)
    red[..., 0] = 255
    encoded = RawEncoder().encode(png_bytes(red))
    pixels = np.frombuffer(encoded.data, np.uint8).reshape(encoded.height, encoded.width, encoded.channels)
    assert pixels[..., 0].min() == 255 and pixels[..., 1:].max() == 0


@pytest.mark.parametrize("kwargs, key", [({"format": "gif"}, "encoder.format"), ({"quality": 101}, "encoder.quality"), ({"channels": 2}, "encoder.channels")])
def test_bad_encoder_settings_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        ImageEncoder(**kwargs)


def test_passthrough_keeps_bytes_after_the_end_of_the_image(photos):
    main = jpeg_bytes(crop(photos, 3))
    camera, _ = jpeg_with_thumbnail(main, jpeg_bytes(crop(photos, 4, size=16)))
    for data in (main + b"\x00" * 512, main + b"\xff" * 64, camera + jpeg_bytes(crop(photos, 5)), png_bytes(crop(photos, 3)) + b"trailing junk"):
        encoded = PassthroughEncoder().encode(data)
        assert encoded.data is data  # trailer included, byte for byte
        assert (encoded.height, encoded.width) == crop(photos, 3).shape[:2]


@pytest.fixture(scope="module")
def samples(photos) -> dict[str, bytes]:
    return encoded_samples(small_rgb(photos))


@pytest.fixture
def no_decoding(monkeypatch):
    """Fails the test if anything reaches OpenCV's decoder."""
    calls = []
    monkeypatch.setattr(cv2, "imdecode", lambda *args: calls.append(args) or pytest.fail("cv2.imdecode was called"))
    return calls


BOMB_NAMES = ["jpeg", "png", "gif", "bmp", "webp-alpha", "jp2", "j2k", "ppm", "pbm", "pam", "pfm", "ras", "hdr", "avif"]


def _bombs(samples) -> dict[str, bytes]:
    """A few bytes each, declaring 30000x30000 (2.7 GB of BGR pixels) in every format OpenCV decodes."""
    bombs = {name: declare_size(name, samples[name], 30000, 30000) for name in BOMB_NAMES}
    bombs["tiff"] = tiff_bytes(np.zeros((8, 8), np.uint8), declared=(30000, 30000))
    bombs["bigtiff-big-endian"] = tiff_bytes(np.zeros((8, 8, 3), np.uint8), order=">", big=True, long_sizes=True, declared=(30000, 30000))
    return bombs


def test_size_bombs_are_skipped_before_any_decoding(samples, no_decoding):
    bombs = _bombs(samples)
    assert max(map(len, bombs.values())) < 32_000  # bytes that promise gigabytes
    encoders = [PassthroughEncoder(), PassthroughEncoder(convert_to="jpeg"), ImageEncoder("png"), ImageEncoder("jpeg", resize=64), RawEncoder()]
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    started = time.perf_counter()
    reasons = {}
    for name, data in bombs.items():
        for encoder in encoders:
            with pytest.raises(EncodeError) as caught:
                encoder.encode(data)
            reasons[name, type(encoder).__name__] = str(caught.value)
    elapsed = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert set(reasons.values()) == {"30000x30000 is over max_pixels=400000000 (a decompression-bomb guard; raise it to convert)"}
    assert no_decoding == []
    assert elapsed < 1.0 and traced_peak < 1 << 20 and peak_growth < 100 * 1024


def test_passthrough_reads_every_format_without_decoding(samples, no_decoding):
    for name, data in samples.items():
        encoded = PassthroughEncoder().encode(data)
        assert encoded.data is data and (encoded.height, encoded.width) == ((53, 37) if name == "tiff-rotated" else (37, 53)), name
    assert no_decoding == []


def test_passthrough_channels_are_what_opencv_decodes(samples):
    for name, data in samples.items():
        encoded = PassthroughEncoder().encode(data)
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert encoded.channels == (1 if pixels.ndim == 2 else pixels.shape[2]), name


def test_reencoding_names_a_truncated_file_as_truncated(photos):
    data = jpeg_bytes(crop(photos, 3))
    cut = data[: len(data) * 2 // 3]
    assert cv2.imdecode(np.frombuffer(cut, np.uint8), cv2.IMREAD_COLOR) is None  # this OpenCV refuses it too
    for encoder in (ImageEncoder("png"), RawEncoder(), PassthroughEncoder(convert_to="png")):
        with pytest.raises(EncodeError, match="^truncated jpeg: the data ends before its EOI marker$"):
            encoder.encode(cut)
    with pytest.raises(EncodeError, match="^truncated png: the chunks end before the IEND chunk$"):
        ImageEncoder("jpeg").encode(png_bytes(crop(photos, 3))[:-12])


def test_opencv_limits_become_encode_errors(samples):
    """2,000,000 x 1 is under max_pixels but over OpenCV's per-side limit: cv2.error inside, a skip outside."""
    wide = declare_size("ppm", samples["ppm"], 2_000_000, 1)
    with pytest.raises(cv2.error):
        cv2.imdecode(np.frombuffer(wide, np.uint8), cv2.IMREAD_COLOR)
    for encoder in (ImageEncoder("png"), RawEncoder()):
        with pytest.raises(EncodeError, match=r"^OpenCV could not decode this pnm \(2000000x1\): .*CV_IO_MAX_IMAGE_WIDTH"):
            encoder.encode(wide)
    with pytest.raises(EncodeError, match=r"^OpenCV could not encode \(1, 20000, 3\) pixels as webp$"):
        ImageEncoder("webp").encode(np.zeros((1, 20000, 3), np.uint8))  # WebP's own limit is 16383 per side
    with pytest.raises(EncodeError, match=r"^pixel array of shape \(0, 5, 3\): no pixels$"):
        ImageEncoder("png").encode(np.zeros((0, 5, 3), np.uint8))


def test_webp_of_gray_says_the_three_channels_it_stores(photos):
    encoded = ImageEncoder("webp").encode(crop(photos, 2)[..., 0].copy())
    decoded = cv2.imdecode(np.frombuffer(encoded.data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert (encoded.channels, encoded.colorspace) == (3, "RGB") and decoded.shape == (*crop(photos, 2).shape[:2], 3)
    assert ImageEncoder("png").encode(crop(photos, 2)[..., 0].copy()).channels == 1
