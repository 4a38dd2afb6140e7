"""Header readers: real format by magic bytes, shape without decoding, completeness checks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import cmyk_jpeg_bytes, crop, jpeg_bytes, png_bytes
from prep.errors import EncodeError
from prep.headers import is_complete, read_header, sniff_format


@pytest.mark.parametrize(
    "make, fmt, channels, space",
    [
        (lambda rgb: jpeg_bytes(rgb), "jpeg", 3, "RGB"),
        (lambda rgb: jpeg_bytes(rgb, progressive=True), "jpeg", 3, "RGB"),
        (lambda rgb: jpeg_bytes(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)), "jpeg", 1, "GRAY"),
        (cmyk_jpeg_bytes, "jpeg", 4, "CMYK"),
        (lambda rgb: png_bytes(rgb), "png", 3, "RGB"),
        (lambda rgb: png_bytes(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)), "png", 1, "GRAY"),
        (lambda rgb: cv2.imencode(".png", np.dstack([rgb, rgb[..., :1]]))[1].tobytes(), "png", 4, "RGB"),
        (lambda rgb: cv2.imencode(".webp", rgb)[1].tobytes(), "webp", 3, "RGB"),
        (lambda rgb: cv2.imencode(".bmp", rgb)[1].tobytes(), "bmp", 3, "RGB"),
    ],
)
def test_header_gives_the_decoded_shape(photos, make, fmt, channels, space):
    rgb = crop(photos, 7)  # 48+.. x 56+.., not square, so height and width cannot be swapped unnoticed
    data = make(rgb)
    info = read_header(data)
    assert (info.format, info.height, info.width, info.channels, info.colorspace) == (
        fmt, rgb.shape[0], rgb.shape[1], channels, space,
    )
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.shape[:2] == (info.height, info.width)
    assert is_complete(data, fmt)


def test_png_named_jpeg_is_detected_by_magic(photos, tmp_path):
    data = png_bytes(crop(photos, 1))
    assert sniff_format(data) == "png"


def test_truncated_files_are_not_complete(photos):
    jpeg = jpeg_bytes(crop(photos, 2))
    png = png_bytes(crop(photos, 2))
    assert not is_complete(jpeg[: len(jpeg) // 2], "jpeg")
    assert not is_complete(png[:-5], "png")
    assert is_complete(jpeg + b"\x00\x00", "jpeg")  # zero padding after EOI is tolerated
    # The header is at the start, so a truncated file still has a readable header.
    assert read_header(jpeg[: len(jpeg) // 2]).format == "jpeg"


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"hello world, not an image", "not a known image format"),
        (b"\xff\xd8\xff", "truncated jpeg header"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "corrupt PNG"),
        (b"\xff\xd8\xff\xda\x00\x02", "no frame header"),
    ],
)
def test_bad_headers_raise_our_error_with_the_reason(data, reason):
    with pytest.raises(EncodeError, match=reason):
        read_header(data)


@settings(max_examples=400, deadline=None)
@given(
    prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 "]),
    rest=st.binary(max_size=64),
)
def test_arbitrary_bytes_never_crash_the_header_reader(prefix, rest):
    data = prefix + rest
    try:
        info = read_header(data)
    except EncodeError:
        return
    assert info.height > 0 and info.width > 0
    is_complete(data, info.format)
