"""EXIF orientation: the JPEG header reader finds the tag, encoders turn such images upright (encoder.exif=apply) or
keep the stored pixels (ignore), summary.json counts them, and stored height/width always describe the stored pixels."""

from __future__ import annotations

import io
import json
import struct

import cv2
import numpy as np
import pytest
from conftest import crop, jpeg_bytes, png_bytes, run_prep
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from prep.core.errors import ConfigError, WriteError
from prep.core.values import Encoded, ShardResult
from prep.encoders.image import ImageEncoder
from prep.encoders.passthrough import PassthroughEncoder
from prep.encoders.pixels import orient
from prep.encoders.raw import RawEncoder
from prep.executors.local import LocalExecutor
from prep.formats import tfrecord
from prep.formats.images import read_header
from prep.labels.subdirs import SubdirLabels
from prep.pipeline import convert
from prep.run import shards
from prep.sources.image_dir import ImageDirSource
from prep.split import NoSplit
from prep.tools.verify import verify_run
from prep.writers import TFRecordWriter

FIELDS = {
    "image/encoded": "encoded",
    "image/format": "format",
    "image/height": "height",
    "image/width": "width",
    "image/channels": "channels",
    "image/class/label": "label",
    "image/filename": "filename",
}
ORIENTATIONS = range(1, 9)
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow, on the broken samples


# ---- test images: stored pixels plus an EXIF orientation, as phones write them ----------------------------------


def stored(photos, i: int = 3) -> np.ndarray:
    rgb = crop(photos, i)
    assert rgb.shape[0] != rgb.shape[1]  # not square: a quarter turn shows in the shape
    return rgb


def pillow_jpeg(rgb: np.ndarray, orientation: int, quality: int = 95, mode: str = "RGB") -> bytes:
    """Pillow's JPEG of the stored pixels with EXIF orientation `orientation` (Pillow writes the TIFF big-endian)."""
    exif = Image.Exif()
    exif[274] = orientation
    out = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(out, format="JPEG", quality=quality, exif=exif.tobytes())
    return out.getvalue()


def exif_tiff(orientation: int, order: str = "<", kind: int = 3) -> bytes:
    """An Exif APP1's TIFF structure: IFD0 with one entry, Orientation, of TIFF type `kind` (3 SHORT, 4 LONG)."""
    value = struct.pack(order + {3: "H", 4: "I"}[kind], orientation).ljust(4, b"\x00")
    head = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8)
    return head + struct.pack(order + "HHHI", 1, 274, kind, 1) + value + b"\x00" * 4


def with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """The JPEG with an APP1 segment holding `payload` right after SOI."""
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def upright(data: bytes) -> np.ndarray:
    """What a photo viewer shows: Pillow's decode turned by ImageOps.exif_transpose."""
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))


def pillow_pixels(data: bytes) -> np.ndarray:
    """Pillow's decode of the stored pixels, EXIF ignored."""
    return np.asarray(Image.open(io.BytesIO(data)))


def difference(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# Mean absolute difference per value: two decoders of one JPEG differ by about 1 (TensorFlow's default fast DCT a
# little more), one more JPEG pass at quality 95 adds 1-2; these crops turned or flipped the wrong way differ by 19-78.
JPEG_ERROR = 5.0


def opencv_rgb(data: bytes) -> np.ndarray:
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # never applies EXIF
    return pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


# ---- the header reader -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("kind", [3, 4])
def test_header_reads_every_orientation_in_both_byte_orders(photos, orientation, order, kind):
    rgb = stored(photos)
    data = with_app1(jpeg_bytes(rgb), b"Exif\x00\x00" + exif_tiff(orientation, order, kind))
    info = read_header(data)
    assert (info.orientation, info.height, info.width) == (orientation, rgb.shape[0], rgb.shape[1])  # stored size
    assert Image.open(io.BytesIO(data)).getexif()[274] == orientation  # Pillow reads the same tag


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_header_reads_pillows_exif(photos, orientation):
    assert read_header(pillow_jpeg(stored(photos), orientation)).orientation == orientation


def test_images_without_exif_orientation_are_upright(photos):
    rgb = stored(photos)
    assert read_header(jpeg_bytes(rgb)).orientation == 1
    assert read_header(png_bytes(rgb)).orientation == 1
    other_tag = Image.Exif()
    other_tag[305] = "camera firmware"  # Software, no Orientation
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", exif=other_tag.tobytes())
    assert read_header(out.getvalue()).orientation == 1


def test_the_first_exif_segment_counts_as_for_pillow(photos):
    jpeg = jpeg_bytes(stored(photos))
    data = with_app1(with_app1(jpeg, b"Exif\x00\x00" + exif_tiff(8)), b"Exif\x00\x00" + exif_tiff(6))
    assert read_header(data).orientation == Image.open(io.BytesIO(data)).getexif()[274] == 6
    xmp = with_app1(jpeg, b"http://ns.adobe.com/xap/1.0/\x00" + exif_tiff(6))  # another APP1, not Exif
    assert read_header(xmp).orientation == 1


BROKEN_EXIF = {
    "no tiff": b"Exif\x00\x00",
    "unknown byte order": b"Exif\x00\x00XX" + exif_tiff(6)[2:],
    "wrong magic": b"Exif\x00\x00II" + struct.pack("<HI", 43, 8) + exif_tiff(6)[8:],
    "ifd beyond the segment": b"Exif\x00\x00II" + struct.pack("<HI", 42, 4000) + exif_tiff(6)[8:],
    "huge entry count, cut short": b"Exif\x00\x00II" + struct.pack("<HIH", 42, 8, 0xFFFF) + struct.pack("<HH", 274, 3),
    "cut inside the entry": b"Exif\x00\x00" + exif_tiff(6)[:16],
    "orientation 0": b"Exif\x00\x00" + exif_tiff(0),
    "orientation 9": b"Exif\x00\x00" + exif_tiff(9),
    "orientation 65535": b"Exif\x00\x00" + exif_tiff(65535, ">"),
    "orientation as text": b"Exif\x00\x00" + exif_tiff(6).replace(struct.pack("<HH", 274, 3), struct.pack("<HH", 274, 2)),
    "no value": b"Exif\x00\x00" + exif_tiff(6).replace(struct.pack("<HHI", 274, 3, 1), struct.pack("<HHI", 274, 3, 0)),
    "bad identifier": b"Exif\x00" + exif_tiff(6),
}


@pytest.mark.parametrize("name", sorted(BROKEN_EXIF))
def test_broken_or_truncated_exif_is_orientation_1_and_the_image_converts(photos, name):
    rgb = stored(photos)
    data = with_app1(jpeg_bytes(rgb), BROKEN_EXIF[name])
    assert read_header(data).orientation == 1
    assert PassthroughEncoder().encode(data).data == data  # kept byte for byte
    png = ImageEncoder("png").encode(data)
    assert (png.height, png.width, png.oriented) == (rgb.shape[0], rgb.shape[1], False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=80), st.integers(0, 60), st.binary(max_size=4))
def test_any_exif_payload_gives_an_orientation_never_an_error(photos, junk, cut, patch):
    """Random bytes, and a valid structure cut anywhere and overwritten anywhere: a header, never an exception."""
    jpeg = jpeg_bytes(crop(photos, 1))
    plain = read_header(jpeg)
    valid = exif_tiff(6, ">")
    mangled = valid[:cut] + patch + valid[cut + len(patch) :]
    for payload in (junk, mangled, valid[:cut]):
        info = read_header(with_app1(jpeg, b"Exif\x00\x00" + payload))
        assert 1 <= info.orientation <= 8
        assert (info.height, info.width, info.channels) == (plain.height, plain.width, plain.channels)


# ---- encoders ----------------------------------------------------------------------------------------------------


def test_orient_matches_pillows_exif_transpose_for_all_eight(photos):
    rgb = stored(photos)
    for orientation in ORIENTATIONS:
        image = Image.fromarray(rgb)
        exif = image.getexif()
        exif[274] = orientation
        out = io.BytesIO()
        image.save(out, format="PNG", exif=exif.tobytes())  # lossless, so equal to the pixel
        assert np.array_equal(orient(rgb, orientation), upright(out.getvalue())), orientation


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_re_encoding_encoders_store_the_upright_pixels(photos, orientation):
    rgb = stored(photos)
    data = pillow_jpeg(rgb, orientation)
    expected = upright(data)
    raw = RawEncoder().encode(data)
    pixels = np.frombuffer(raw.data, np.uint8).reshape(raw.height, raw.width, raw.channels)
    assert difference(pixels, expected) < JPEG_ERROR
    png = ImageEncoder("png").encode(data)
    assert difference(opencv_rgb(png.data), expected) < JPEG_ERROR
    assert (png.height, png.width) == expected.shape[:2] == opencv_rgb(png.data).shape[:2]
    assert (raw.oriented, raw.reoriented, png.oriented, png.reoriented) == (orientation != 1,) * 4
    if orientation in (2, 3, 4):  # same shape as stored: the comparison above sees a missing flip
        assert difference(pillow_pixels(data), expected) > 10


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_ignore_stores_the_pixels_as_they_are(photos, orientation):
    rgb = stored(photos)
    data = pillow_jpeg(rgb, orientation)
    raw = RawEncoder(exif="ignore").encode(data)
    pixels = np.frombuffer(raw.data, np.uint8).reshape(raw.height, raw.width, raw.channels)
    assert difference(pixels, pillow_pixels(data)) < JPEG_ERROR
    assert (raw.height, raw.width, raw.oriented, raw.reoriented) == (*rgb.shape[:2], True, False)
    png = ImageEncoder("png", exif="ignore").encode(data)
    assert opencv_rgb(png.data).shape[:2] == (png.height, png.width) == rgb.shape[:2]


def test_resize_and_gray_apply_to_the_upright_image(photos):
    rgb = stored(photos)  # 79x125: turned, 125x79; shorter side 40 -> 63x40
    data = pillow_jpeg(rgb, 6)
    small = ImageEncoder("png", resize=40, channels=1).encode(data)
    assert (small.height, small.width, small.channels) == (round(125 * 40 / 79), 40, 1)
    gray = pillow_jpeg(rgb, 8, mode="L")
    turned = PassthroughEncoder().encode(gray)
    assert (turned.height, turned.width, turned.channels, turned.colorspace) == (125, 79, 1, "GRAY")  # stays gray
    assert difference(pillow_pixels(turned.data), upright(gray)) < JPEG_ERROR


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_passthrough_re_encodes_only_oriented_jpegs_upright_and_without_exif(photos, orientation):
    rgb = stored(photos)
    data = pillow_jpeg(rgb, orientation)
    out = PassthroughEncoder(quality=95).encode(data)
    if orientation == 1:
        assert out == Encoded(data, "jpeg", *rgb.shape[:2], 3, "RGB")  # byte-identical
        return
    assert out.data != data and (out.format, out.oriented, out.reoriented) == ("jpeg", True, True)
    assert read_header(out.data).orientation == 1
    assert 274 not in Image.open(io.BytesIO(out.data)).getexif()  # no EXIF left: no reader can turn it twice
    assert (out.height, out.width) == upright(data).shape[:2] == pillow_pixels(out.data).shape[:2]
    assert difference(pillow_pixels(out.data), upright(data)) < JPEG_ERROR
    kept = PassthroughEncoder(exif="ignore").encode(data)
    assert kept == Encoded(data, "jpeg", *rgb.shape[:2], 3, "RGB", oriented=True, reoriented=False)


def test_passthrough_keeps_every_other_image_byte_identical(photos):
    rgb = stored(photos)
    for data in (jpeg_bytes(rgb), png_bytes(rgb), pillow_jpeg(rgb, 1), with_app1(jpeg_bytes(rgb), BROKEN_EXIF["orientation 9"])):
        out = PassthroughEncoder().encode(data)
        assert (out.data, out.oriented, out.reoriented) == (data, False, False)


def test_passthrough_convert_to_turns_what_it_converts(photos):
    rgb = stored(photos)
    data = pillow_jpeg(rgb, 6)
    png = PassthroughEncoder(convert_to="png").encode(data)
    assert (png.format, png.height, png.width, png.reoriented) == ("png", 125, 79, True)
    assert difference(opencv_rgb(png.data), upright(data)) < JPEG_ERROR
    cmyk = pillow_jpeg(rgb, 8, mode="CMYK")
    for exif, shape in (("apply", (125, 79)), ("ignore", (79, 125))):
        out = PassthroughEncoder(convert_to="jpeg", exif=exif).encode(cmyk)  # re-encoded for CMYK either way
        assert (out.colorspace, (out.height, out.width)) == ("RGB", shape)
        assert pillow_pixels(out.data).shape[:2] == shape


@pytest.mark.parametrize("make", [lambda e: ImageEncoder("png", exif=e), lambda e: RawEncoder(exif=e), lambda e: PassthroughEncoder(exif=e)])
def test_encoder_exif_is_apply_or_ignore_and_describe_says_which(make):
    assert make("apply").describe()["exif"] == "apply"
    assert make("ignore").describe()["exif"] == "ignore"
    with pytest.raises(ConfigError, match=r"encoder.exif='rotate': choose apply .* or ignore"):
        make("rotate")


def test_every_encoder_choice_defaults_to_apply():
    from test_config import choices, composed, stages_of

    for choice in choices("encoder"):
        cfg = composed(f"encoder={choice}")
        assert cfg.encoder.exif == "apply"
        assert stages_of(cfg)["encoder"].describe()["exif"] == "apply"


# ---- runs --------------------------------------------------------------------------------------------------------


@pytest.fixture
def phone_folder(tmp_path, photos):
    """root/<class>/<name>.jpg: plain JPEGs, two phone photos (orientation 6 and 8), one with broken EXIF.
    Returns (root, {name: orientation})."""
    root = tmp_path / "phone"
    orientations = {}
    for i in range(8):
        name = f"{['cat', 'dog'][i % 2]}/{i:02d}.jpg"
        rgb = crop(photos, i)
        orientations[name] = {2: 6, 5: 8}.get(i, 1)
        if i in (2, 5):
            data = pillow_jpeg(rgb, orientations[name])
        elif i == 6:
            data = with_app1(jpeg_bytes(rgb), BROKEN_EXIF["huge entry count, cut short"])
        else:
            data = jpeg_bytes(rgb)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root, orientations


def convert_folder(root, out, encoder, **kwargs) -> dict:
    return convert(
        name="phone", source=ImageDirSource(str(root)), labels=SubdirLabels(), splitter=NoSplit("train"), encoder=encoder,
        writer=TFRecordWriter(shard_size=kwargs.pop("shard_size", 3), features=FIELDS), executor=LocalExecutor(1),
        output_dir=str(out), progress=False, **kwargs,
    )  # fmt: skip


def records(out, summary) -> dict[str, dict]:
    found = {}
    for shard in summary["shards"]:
        with open(out / shard["path"], "rb") as f:
            for _, payload in tfrecord.read_records(f):
                record = {key: values[0] for key, (_kind, values) in tfrecord.decode_example(payload).items()}
                found[record["image/filename"].decode()] = record
    return found


def test_passthrough_run_turns_phone_photos_upright_and_counts_them(tmp_path, phone_folder):
    root, orientations = phone_folder
    out = tmp_path / "out"
    summary = convert_folder(root, out, PassthroughEncoder(), verify=True)  # verify decodes every stored image
    assert summary["exif"] == {"mode": "apply", "oriented": 2, "applied": 2}
    assert summary["encoder"]["exif"] == "apply"
    assert json.loads((out / "summary.json").read_text())["exif"] == summary["exif"]
    for name, record in records(out, summary).items():
        original = (root / name).read_bytes()
        if orientations[name] == 1:
            assert record["image/encoded"] == original
            continue
        image = record["image/encoded"]
        assert [record["image/height"], record["image/width"]] == list(upright(original).shape[:2]) == list(pillow_pixels(image).shape[:2])
        assert difference(pillow_pixels(image), upright(original)) < JPEG_ERROR


def test_passthrough_ignore_run_keeps_bytes_and_verifies(tmp_path, phone_folder):
    root, orientations = phone_folder
    out = tmp_path / "out"
    summary = convert_folder(root, out, PassthroughEncoder(exif="ignore"), verify=True)
    assert summary["exif"] == {"mode": "ignore", "oriented": 2, "applied": 0}
    for name, record in records(out, summary).items():
        assert record["image/encoded"] == (root / name).read_bytes()
        assert [record["image/height"], record["image/width"]] == list(pillow_pixels(record["image/encoded"]).shape[:2])
    assert all(ok for ok, _line in verify_run(str(out), decode=True))


def test_png_run_stores_upright_pixels(tmp_path, phone_folder):
    root, orientations = phone_folder
    out = tmp_path / "out"
    summary = convert_folder(root, out, ImageEncoder("png"), verify=True)
    assert summary["exif"] == {"mode": "apply", "oriented": 2, "applied": 2}
    assert summary["encoder"]["exif"] == "apply"
    for name, record in records(out, summary).items():
        pixels = opencv_rgb(record["image/encoded"])
        assert [record["image/height"], record["image/width"]] == list(pixels.shape[:2])
        assert difference(pixels, upright((root / name).read_bytes())) < JPEG_ERROR


class SidewaysSizes(PassthroughEncoder):
    """Keeps the bytes but states the upright size: what a reader that applied EXIF would have written."""

    def encode(self, payload):
        encoded = super().encode(payload)
        if read_header(payload).orientation in (6, 8):
            return Encoded(encoded.data, encoded.format, encoded.width, encoded.height, encoded.channels, encoded.colorspace)
        return encoded


def test_verify_fails_a_record_whose_size_is_not_its_stored_pixels(tmp_path, phone_folder):
    root, _ = phone_folder
    with pytest.raises(WriteError, match=r"image decodes to 72x122 pixels, the record says 122x72 \(image/width, image/height\)"):
        convert_folder(root, tmp_path / "out", SidewaysSizes(exif="ignore"), verify=True)


def test_resume_reads_the_counts_back_from_the_manifest(tmp_path, phone_folder):
    from test_output_safety import shard_task_dies

    root, _ = phone_folder
    out = tmp_path / "out"
    with shard_task_dies(2):  # shards 0 and 1 (the two phone photos) finish, shard 2 dies
        convert_folder(root, out, PassthroughEncoder())
    written = []
    real = shards.write_shard
    shards.write_shard = lambda job, plan: written.append(plan.index) or real(job, plan)
    try:
        summary = convert_folder(root, out, PassthroughEncoder(), resume=True)
    finally:
        shards.write_shard = real
    assert written == [2]  # shards 0 and 1 came back from the manifest
    assert summary["exif"] == {"mode": "apply", "oriented": 2, "applied": 2}
    result = ShardResult("a", "train", 3, 10, "0" * 64, {0: 3}, {"jpeg": 3}, [], [], {}, oriented=2, reoriented=1)
    assert ShardResult.from_dict(json.loads(json.dumps(result.as_dict()))) == result


@pytest.mark.slow
def test_tensorflow_decodes_the_stored_phone_photos_upright(tmp_path, phone_folder, tf):
    """TensorFlow's decoder ignores EXIF: with exif=apply what it decodes is what a viewer shows, at the stated size."""
    root, orientations = phone_folder
    spec = {k: tf.io.FixedLenFeature([], tf.string if k in ("image/encoded", "image/filename", "image/format") else tf.int64) for k in FIELDS}
    for exif in ("apply", "ignore"):
        out = tmp_path / exif
        summary = convert_folder(root, out, PassthroughEncoder(exif=exif))
        seen = 0
        for raw in tf.data.TFRecordDataset([str(out / s["path"]) for s in summary["shards"]]):
            example = tf.io.parse_single_example(raw, spec)
            name = example["image/filename"].numpy().decode()
            pixels = tf.io.decode_jpeg(example["image/encoded"], channels=3).numpy()
            assert list(pixels.shape[:2]) == [int(example["image/height"]), int(example["image/width"])]
            original = (root / name).read_bytes()
            expected = upright(original) if exif == "apply" else pillow_pixels(original)
            assert difference(pixels, expected) < JPEG_ERROR
            seen += orientations[name] != 1
        assert seen == 2


@pytest.mark.slow
def test_cli_encoder_exif_override_and_a_wrong_value(tmp_path, phone_folder):
    root, _ = phone_folder
    out = tmp_path / "run"
    run_prep("dataset=images", f"source.image_dir={root}", "labels=subdirs", "encoder.exif=ignore", f"hydra.run.dir={out}")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exif"] == {"mode": "ignore", "oriented": 2, "applied": 0}
    assert summary["encoder"] == {"name": "passthrough", "convert_to": None, "exif": "ignore"}
    proc = run_prep("dataset=images", f"source.image_dir={root}", "labels=subdirs", "encoder.exif=sideways", f"hydra.run.dir={tmp_path / 'bad'}", check=False)
    assert proc.returncode == 1
    assert "encoder.exif='sideways': choose apply" in proc.stderr
    assert "Traceback" not in proc.stderr
