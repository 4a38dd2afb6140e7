"""Encoders: pass-through keeps bytes, OpenCV encoders keep colours, pixel order and shapes right."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import cmyk_jpeg_bytes, crop, jpeg_bytes, png_bytes
from prep.encoders import ImageEncoder, PassthroughEncoder, RawEncoder
from prep.errors import ConfigError, EncodeError
from prep.sources import DigitsSource


def test_passthrough_keeps_the_bytes_and_reads_the_shape(photos):
    data = jpeg_bytes(crop(photos, 3))
    encoded = PassthroughEncoder().encode(data)
    assert encoded.data is data
    assert (encoded.format, encoded.channels, encoded.colorspace) == ("jpeg", 3, "RGB")
    assert (encoded.height, encoded.width) == crop(photos, 3).shape[:2]


def test_passthrough_rejects_truncated_and_garbage(photos):
    data = jpeg_bytes(crop(photos, 3))
    with pytest.raises(EncodeError, match="truncated jpeg"):
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
