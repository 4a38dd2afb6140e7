"""Any bytes, as an image: every encoder either gives what OpenCV decodes or an EncodeError, never a traceback."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_samples import encoded_samples, small_rgb

from prep.core.errors import EncodeError
from prep.encoders.image import ImageEncoder
from prep.encoders.passthrough import PassthroughEncoder
from prep.encoders.raw import RawEncoder

LIMIT = 1 << 22  # max_pixels: a mutated header may ask for anything; keep what the decoders allocate small
MAGICS = [
    b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8X", b"II*\x00", b"MM\x00*", b"II+\x00\x08\x00\x00\x00", b"\x00\x00\x00\x0cjP  \r\n\x87\n",
    b"\xff\x4f\xff\x51", b"P1 ", b"P4\n", b"P6\n", b"P7\n", b"Pf\n", b"PF\n", b"\x59\xa6\x6a\x95", b"#?RADIANCE\n",
    b"#?RGBE\nFORMAT=32-bit_rle_rgbe\n\n", b"\x00\x00\x00\x1cftypavif", b"v/1\x01",
]  # fmt: skip


@functools.lru_cache(maxsize=1)
def _samples() -> dict[str, bytes]:
    from sklearn.datasets import load_sample_images

    return encoded_samples(small_rgb([np.ascontiguousarray(image) for image in load_sample_images().images]))


@st.composite
def image_bytes(draw) -> bytes:
    """Random bytes, magic numbers followed by junk, and real files cut short, mutated or given a tail."""
    kind = draw(st.sampled_from(["random", "magic", "truncated", "mutated", "sizes", "tail"]))
    if kind == "random":
        return draw(st.binary(max_size=400))
    if kind == "magic":
        return draw(st.sampled_from(MAGICS)) + draw(st.binary(max_size=300))
    data = _samples()[draw(st.sampled_from(sorted(_samples())))]
    if kind == "truncated":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "tail":
        return data + draw(st.binary(max_size=64))
    mutated = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, min(len(data), 160) - 1) | st.integers(0, len(data) - 1))  # headers, or anywhere
        if kind == "sizes":  # a header field made huge, zero or negative
            value = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x80\x00", b"\x00\x01", b"99999999999"]))
        else:
            value = bytes([draw(st.integers(0, 255))])
        mutated[pos : pos + len(value)] = value
    return bytes(mutated[: len(data)])


def _shape(pixels) -> tuple[int, int, int]:
    return pixels.shape[0], pixels.shape[1], 1 if pixels.ndim == 2 else pixels.shape[2]


def _opencv(data: bytes, flag: int):
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except cv2.error:
        return None


def check_encoders(data: bytes) -> int:
    """Runs every encoder on data; asserts each result matches what OpenCV decodes. Returns how many succeeded."""
    succeeded = 0
    try:
        kept = PassthroughEncoder(max_pixels=LIMIT).encode(data)
    except EncodeError:
        pass
    else:
        succeeded += 1
        assert kept.data is data  # untouched
        pixels = _opencv(data, cv2.IMREAD_UNCHANGED)  # pass-through checks headers only: it may keep undecodable data
        if pixels is not None:
            assert (kept.height, kept.width, kept.channels) == _shape(pixels)
    for encoder in [ImageEncoder(fmt, max_pixels=LIMIT) for fmt in ("jpeg", "png", "tiff", "webp", "bmp")] + [RawEncoder(max_pixels=LIMIT)]:
        try:
            out = encoder.encode(data)
        except EncodeError:
            continue
        succeeded += 1
        source = _opencv(data, cv2.IMREAD_ANYCOLOR)
        assert source is not None and (out.height, out.width) == source.shape[:2]
        if out.format == "raw":
            assert len(out.data) == out.height * out.width * out.channels and out.channels == _shape(source)[2]
        else:
            assert _shape(_opencv(out.data, cv2.IMREAD_UNCHANGED)) == (out.height, out.width, out.channels)
    return succeeded


def test_every_sample_format_converts_with_every_encoder():
    converted = {name: check_encoders(data) for name, data in _samples().items()}
    # OpenCV decodes a float TIFF only with IMREAD_ANYDEPTH, never to the 8 bits re-encoding needs: kept as is.
    assert converted == {name: 1 if name == "tiff-float" else 7 for name in converted}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=image_bytes())
def test_any_bytes_give_an_image_or_an_encode_error(data):
    check_encoders(data)


@pytest.mark.parametrize("encoder", [PassthroughEncoder(), RawEncoder()] + [ImageEncoder(fmt) for fmt in ("jpeg", "png", "tiff", "webp", "bmp")])
def test_zero_bytes_are_an_empty_file_for_every_encoder(encoder):
    with pytest.raises(EncodeError, match="^empty file$"):
        encoder.encode(b"")


# OpenCV's build-information names for its image codecs -> the formats prep reads them as.
BUILD_CODECS = {
    "JPEG": {"jpeg"}, "WEBP": {"webp"}, "AVIF": {"avif"}, "PNG": {"png"}, "TIFF": {"tiff"}, "JPEG 2000": {"jp2", "j2k"},
    "GIF": {"gif"}, "HDR": {"hdr"}, "SUNRASTER": {"ras"}, "PXM": {"pnm", "pam"}, "PFM": {"pfm"},
}  # fmt: skip


def test_every_decoder_in_this_opencv_build_has_a_header_reader():
    """A new decoder in an OpenCV upgrade (JPEG XL, OpenEXR, ...) fails here rather than in a user's run."""
    from prep.formats.images import HEADER_FORMATS

    info = cv2.getBuildInformation()
    media = info[info.index("Media I/O:") : info.index("Video I/O:")]
    built = {}
    for line in media.splitlines()[1:]:
        name, _, value = line.strip().partition(":")
        if line.startswith("    ") and not line.startswith("      ") and name != "ZLib" and value.strip():
            built[name] = value.strip() != "NO"
    assert set(built) <= set(BUILD_CODECS) | {"OpenEXR"}, f"unknown codec lines: {set(built) - set(BUILD_CODECS)}"
    assert built.get("OpenEXR", False) is False  # EXR sizes are not read before decoding: refused by name
    decodable = {"bmp"}.union(*(BUILD_CODECS[name] for name, on in built.items() if on))
    assert decodable == HEADER_FORMATS


def test_the_sample_corpus_exercises_every_header_reader():
    from prep.formats.images import HEADER_FORMATS, read_header

    assert {read_header(data).format for data in _samples().values()} == HEADER_FORMATS
