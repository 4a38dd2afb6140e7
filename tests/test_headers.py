"""Header readers: real format by magic bytes, shape without decoding, completeness checks."""

from __future__ import annotations

import functools
import struct
import zlib

import cv2
import numpy as np
import pytest
from conftest import cmyk_jpeg_bytes, crop, jpeg_bytes, png_bytes
from hypothesis import given, settings
from hypothesis import strategies as st
from image_samples import declare_size, encoded_samples, jpeg_with_thumbnail, small_rgb, tiff_bytes

from prep.core.errors import EncodeError
from prep.formats.images import check_complete, is_complete, read_header, sniff_format


def _decoded_shape(data: bytes) -> tuple[int, int, int] | None:
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if pixels is None else (pixels.shape[0], pixels.shape[1], 1 if pixels.ndim == 2 else pixels.shape[2])


@pytest.fixture(scope="module")
def samples(photos) -> dict[str, bytes]:
    return encoded_samples(small_rgb(photos))


@pytest.mark.parametrize(
    "make, fmt, channels, space",
    [
        (lambda rgb: jpeg_bytes(rgb), "jpeg", 3, "RGB"),
        (lambda rgb: jpeg_bytes(rgb, progressive=True), "jpeg", 3, "RGB"),
        (lambda rgb: jpeg_bytes(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)), "jpeg", 1, "GRAY"),
        (cmyk_jpeg_bytes, "jpeg", 3, "CMYK"),  # OpenCV and TensorFlow both decode CMYK to 3 channels
        (lambda rgb: png_bytes(rgb), "png", 3, "RGB"),
        (lambda rgb: png_bytes(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)), "png", 1, "GRAY"),
        (lambda rgb: cv2.imencode(".png", np.dstack([rgb, rgb[..., :1]]))[1].tobytes(), "png", 4, "RGB"),
        (lambda rgb: cv2.imencode(".webp", rgb)[1].tobytes(), "webp", 3, "RGB"),
        (lambda rgb: cv2.imencode(".bmp", rgb)[1].tobytes(), "bmp", 3, "RGB"),
        (lambda rgb: cv2.imencode(".tiff", rgb)[1].tobytes(), "tiff", 3, "RGB"),
        (lambda rgb: tiff_bytes(rgb[..., 0], order=">", big=True), "tiff", 1, "GRAY"),
        (lambda rgb: cv2.imencode(".jp2", rgb)[1].tobytes(), "jp2", 3, "RGB"),
        (lambda rgb: cv2.imencode(".pgm", rgb[..., 0])[1].tobytes(), "pnm", 1, "GRAY"),
        (lambda rgb: cv2.imencode(".pam", rgb)[1].tobytes(), "pam", 3, "RGB"),
        (lambda rgb: cv2.imencode(".pfm", rgb)[1].tobytes(), "pfm", 3, "RGB"),
        (lambda rgb: cv2.imencode(".ras", rgb)[1].tobytes(), "ras", 3, "RGB"),
        (lambda rgb: cv2.imencode(".hdr", rgb)[1].tobytes(), "hdr", 3, "RGB"),
        (lambda rgb: cv2.imencode(".avif", rgb)[1].tobytes(), "avif", 3, "RGB"),
    ],
)
def test_header_gives_the_decoded_shape(photos, make, fmt, channels, space):
    rgb = crop(photos, 7)  # 48+.. x 56+.., not square, so height and width cannot be swapped unnoticed
    data = make(rgb)
    info = read_header(data)
    assert (info.format, info.height, info.width, info.channels, info.colorspace) == (
        fmt, rgb.shape[0], rgb.shape[1], channels, space,
    )
    assert _decoded_shape(data) == (info.height, info.width, info.channels)
    assert is_complete(data, fmt)


def test_every_format_opencv_decodes_has_a_header_reader_that_agrees_with_it(samples):
    """Gray, colour, alpha, palette, 16-bit, float, CMYK, rotated, animated: what OpenCV decodes, unchanged."""
    got = {name: (lambda info: (info.height, info.width, info.channels))(read_header(data)) for name, data in samples.items()}
    assert got == {name: _decoded_shape(data) for name, data in samples.items()}
    assert got["tiff-rotated"] == (53, 37, 3)  # orientation 6: OpenCV turns it, so the header reader does too
    assert got["png-gray-alpha"] == got["png-palette-trns"] == got["gif-transparent"] == (37, 53, 4)


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
    with pytest.raises(EncodeError, match="^truncated jpeg: the data ends before its EOI marker$"):
        check_complete(jpeg[:-1], "jpeg")
    with pytest.raises(EncodeError, match="^truncated png: the chunks end before the IEND chunk$"):
        check_complete(png[:-1], "png")


# ---- completeness: trailing bytes are fine, any cut is not ---------------------------------------------------


def _jpeg_variants(photos) -> dict[str, bytes]:
    rgb = crop(photos, 5, size=64)
    main = jpeg_bytes(rgb)
    with_thumbnail, _ = jpeg_with_thumbnail(main, jpeg_bytes(crop(photos, 6, size=16)))
    restarts = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])[1].tobytes()
    return {
        "baseline": main, "progressive": jpeg_bytes(rgb, progressive=True), "gray": jpeg_bytes(rgb[..., 0].copy()),
        "cmyk": cmyk_jpeg_bytes(rgb), "thumbnail": with_thumbnail, "restart-markers": restarts,
    }  # fmt: skip


TRAILERS = {
    "zero padding": b"\x00" * 4096,
    "0xff padding": b"\xff" * 300,
    "maker data": b"\x00\x00" + bytes(range(256)) * 4 + b"\xff\xd9",  # ends with FF D9 itself
    "junk": bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8)),
}


def _with_trailers(photos) -> dict[str, bytes]:
    variants = _jpeg_variants(photos)
    trailers = dict(TRAILERS, **{"second jpeg (MPF)": variants["gray"]})
    return {f"{name} + {tail}": data + extra for name, data in variants.items() for tail, extra in trailers.items()}


def test_jpegs_with_bytes_after_their_eoi_are_complete(photos):
    cases = _with_trailers(photos)
    assert len(cases) == 30
    assert {name: is_complete(data, "jpeg") for name, data in cases.items()} == dict.fromkeys(cases, True)


def test_every_cut_of_a_jpeg_is_incomplete_even_right_after_an_embedded_thumbnail(photos):
    for name, data in _jpeg_variants(photos).items():
        assert is_complete(data, "jpeg"), name
        assert [k for k in range(len(data)) if is_complete(data[:k], "jpeg")] == [], name
    main = jpeg_bytes(crop(photos, 5, size=64))
    data, thumbnail_end = jpeg_with_thumbnail(main, jpeg_bytes(crop(photos, 6, size=16)))
    assert data[:thumbnail_end].endswith(b"\xff\xd9")  # what the old "ends with EOI" check took for complete
    assert not is_complete(data[:thumbnail_end], "jpeg")


def test_cuts_before_a_trailer_are_incomplete(photos):
    for name, data in _jpeg_variants(photos).items():
        tail = data + TRAILERS["maker data"]
        assert [k for k in range(0, len(data), 7) if is_complete(tail[:k], "jpeg")] == [], name


@settings(max_examples=60, deadline=None)
@given(index=st.integers(0, 40), quality=st.integers(30, 100), progressive=st.booleans(), trailer=st.binary(max_size=200), cut=st.floats(0, 1, exclude_max=True))
def test_a_jpeg_is_complete_with_any_trailer_and_incomplete_when_cut(index, quality, progressive, trailer, cut):
    data = jpeg_bytes(crop(_photos(), index), quality=quality, progressive=progressive)
    assert is_complete(data + trailer, "jpeg")
    assert not is_complete(data[: int(cut * len(data))], "jpeg")


@functools.lru_cache(maxsize=1)
def _photos() -> list[np.ndarray]:
    """The photos fixture's pictures, for hypothesis tests (which take no function-scoped fixtures)."""
    from sklearn.datasets import load_sample_images

    return [np.ascontiguousarray(image) for image in load_sample_images().images]


def test_png_gif_and_webp_cuts_are_incomplete_and_trailers_fine(samples):
    for name in ("png", "png-palette-trns", "png-animated", "gif", "gif-animated", "webp", "webp-alpha", "webp-animated"):
        data = samples[name]
        fmt = read_header(data).format
        assert is_complete(data, fmt) and is_complete(data + b"\x00" * 64 + b"junk", fmt), name
        assert [k for k in range(len(data)) if is_complete(data[:k], fmt)] == [], name


def test_a_png_cut_right_after_an_iend_lookalike_is_incomplete(photos):
    """A private chunk can hold the 12 bytes of an IEND chunk; only the chunk walk tells them apart."""
    png = png_bytes(crop(photos, 8, size=32))
    body = b"\x00\x00\x00\x00IEND\xaeB`\x82"
    chunk = struct.pack(">I", len(body)) + b"prVt" + body + struct.pack(">I", zlib.crc32(b"prVt" + body))
    data = png[:33] + chunk + png[33:]  # after IHDR
    assert is_complete(data, "png") and _decoded_shape(data) == (32, 32, 3)
    cut = data[: 33 + 8 + len(body)]
    assert cut.endswith(body) and not is_complete(cut, "png")


@pytest.mark.slow
def test_trailing_bytes_decode_to_the_same_pixels_in_tensorflow_and_opencv(photos, samples, tf):
    def decoders(data: bytes) -> dict[str, np.ndarray]:
        found = {"opencv": cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), "tf.image": tf.io.decode_image(data, expand_animations=False).numpy()}
        fmt = sniff_format(data)
        if fmt == "jpeg":
            found["tf.jpeg"] = tf.io.decode_jpeg(data).numpy()
        if fmt == "png":
            found["tf.png"] = tf.io.decode_png(data).numpy()
        return found

    cases = {name: (data, data) for name, data in _jpeg_variants(photos).items()}
    cases.update({f"{name} + {tail}": (data, data + extra) for name, data in _jpeg_variants(photos).items() for tail, extra in TRAILERS.items()})
    cases.update({f"png + {tail}": (samples["png"], samples["png"] + extra) for tail, extra in TRAILERS.items()})
    for name, (clean, tailed) in cases.items():
        assert is_complete(tailed, sniff_format(tailed)), name
        expected, got = decoders(clean), decoders(tailed)
        assert expected.keys() == got.keys() and len(got) >= 3, name
        for decoder, pixels in expected.items():
            assert np.array_equal(pixels, got[decoder]), (name, decoder)
    # And what is cut short is refused by TensorFlow too: pass-through must not keep it.
    baseline = _jpeg_variants(photos)["baseline"]
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_jpeg(baseline[: len(baseline) // 2])


# ---- header readers for every decodable format ---------------------------------------------------------------


BOMBS = ["jpeg", "jpeg-progressive", "png", "gif", "bmp", "webp-alpha", "jp2", "j2k", "ppm", "pgm", "pbm", "pam", "pfm", "ras", "hdr", "avif"]


def test_declared_sizes_are_read_from_every_header(samples):
    for name in BOMBS:
        data = declare_size(name, samples[name], 30000, 20000)
        assert (read_header(data).width, read_header(data).height) == (30000, 20000), name
    for order, big, long_sizes in [("<", False, False), (">", False, True), ("<", True, False), (">", True, True)]:
        data = tiff_bytes(np.zeros((2, 3), np.uint8), order=order, big=big, long_sizes=long_sizes, declared=(30000, 20000))
        assert (read_header(data).width, read_header(data).height) == (30000, 20000), (order, big)


def test_text_headers_with_comments(samples):
    pixels = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    cases = {
        b"P6\n# made by hand\n7 # width\n# height next\n5\n255\n" + pixels.tobytes(): (5, 7, 3),
        b"P5 7\t5\r\n255\n" + pixels[..., 0].tobytes(): (5, 7, 1),
        b"P7\n# a comment\nWIDTH 7\nHEIGHT 5\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" + pixels.tobytes(): (5, 7, 3),
        b"Pf\n7 5\n-1.0\n" + np.ones((5, 7), "<f4").tobytes(): (5, 7, 1),
        b"#?RADIANCE\n# written by hand\nEXPOSURE=1.0\nFORMAT=32-bit_rle_rgbe\n\n-Y 5 +X 7\n" + b"\x80\x80\x80\x80" * 35: (5, 7, 3),
    }
    for data, shape in cases.items():
        info = read_header(data)
        assert (info.height, info.width, info.channels) == shape == _decoded_shape(data), data[:40]


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "^empty file$"),
        (b"hello world, not an image", "not a known image format"),
        (b"\xff\xd8\xff", "truncated jpeg header"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "corrupt PNG"),
        (b"\xff\xd8\xff\xda\x00\x02", "no frame header"),
        (b"v/1\x01\x02\x00\x00\x00channels", "^exr: size cannot be read before decoding$"),
        (b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n+X 7 -Y 5\n", "^hdr: size cannot be read before decoding"),
        (b"\x00\x00\x00\x14ftypavis\x00\x00\x00\x00avis\x00\x00\x00\x08moov", "^avif image sequence: size cannot be read before decoding$"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xff\xff\xff\x00\x00\x00\x05\x08\x02\x00\x00\x00", "^png header gives an absurd size 4294967295x5$"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x00\x00\x00\x00\x05\x08\x02\x00\x00\x00", "^png header gives an empty size 0x5$"),
        (b"P6\n99999999999 5\n255\n", "^pnm header gives an absurd number"),
        (b"P6\n0 5\n255\n", "^pnm header gives an empty size 0x5$"),
        (b"\xff\x4f\xff\x51\x00\x29\x00\x00\xff\xff\xff\xff\x00\x00\x00\x05" + b"\x00" * 32, "^j2k header gives an absurd size 4294967295x5$"),
        (b"\x59\xa6\x6a\x95\xff\xff\xff\xf0\x00\x00\x00\x05\x00\x00\x00\x18" + b"\x00" * 16, "^ras header gives an empty size -16x5$"),
        (b"BM" + b"\x00" * 12 + struct.pack("<iiiHH", 40, -3, 5, 1, 24) + b"\x00" * 24, "^bmp header gives an empty size -3x5$"),
        (b"II+\x00\x08\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00" + struct.pack("<HHQQ", 256, 16, 1, 1 << 40) + struct.pack("<HHQQ", 257, 3, 1, 5), "^tiff header gives an absurd size 1099511627776x5$"),
        (b"II*\x00\x08\x00\x00\x00\x02\x00" + struct.pack("<HHII", 256, 4, 1, 7) + struct.pack("<HHII", 256, 4, 1, 9), "^corrupt TIFF: 1 or conflicting width values$"),
        (b"II+\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80", "^truncated tiff header$"),
    ],
)
def test_bad_headers_raise_our_error_with_the_reason(data, reason):
    with pytest.raises(EncodeError, match=reason):
        read_header(data)


MAGICS = [
    b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"RIFF\x00\x00\x00\x00WEBPVP8X",
    b"II*\x00", b"MM\x00*", b"II+\x00\x08\x00\x00\x00", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51", b"P3\n", b"P7\n", b"PF\n",
    b"\x59\xa6\x6a\x95", b"#?RGBE\n", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n", b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00",
]  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(prefix=st.sampled_from(MAGICS), rest=st.binary(max_size=96))
def test_arbitrary_bytes_never_crash_the_header_reader(prefix, rest):
    data = prefix + rest
    try:
        info = read_header(data)
    except EncodeError:
        return
    assert 0 < info.height < 2**31 and 0 < info.width < 2**31 and info.channels >= 1
    try:
        check_complete(data, info.format)
    except EncodeError as e:
        assert str(e).startswith(("truncated", "corrupt")), e
