"""encoder.reduce=dct: JPEGs decoded by libjpeg at 1/2, 1/4 or 1/8 scale when that is still >= encoder.resize, then
scaled with INTER_AREA to exactly the size a full decode gives; reduce=none is the full decode, byte for byte."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from conftest import cmyk_jpeg_bytes, jpeg_bytes, png_bytes
from PIL import Image
from test_exif import FIELDS, records  # the keys and the record reader of the EXIF tests, one definition

from prep.core.errors import ConfigError, EncodeError
from prep.core.values import ShardResult
from prep.encoders.image import ImageEncoder
from prep.encoders.passthrough import PassthroughEncoder
from prep.encoders.pixels import reduction, resized_size
from prep.encoders.raw import RawEncoder
from prep.executors.local import LocalExecutor
from prep.labels.subdirs import SubdirLabels
from prep.pipeline import convert
from prep.sources.image_dir import ImageDirSource
from prep.split import NoSplit
from prep.writers import TFRecordWriter


def photo(photos, height: int, width: int, i: int = 0) -> np.ndarray:
    """One of scikit-learn's photos scaled to exactly height x width (RGB)."""
    return np.ascontiguousarray(cv2.resize(photos[i % 2], (width, height), interpolation=cv2.INTER_AREA))


def full_resize(data: bytes, size: int, flag: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """What prep did before encoder.reduce, written out here: decode whole, then INTER_AREA to the shorter side."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    height, width = pixels.shape[:2]
    if min(height, width) <= size:
        return pixels
    scale = size / min(height, width)
    return cv2.resize(pixels, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)


def exif_jpeg(rgb: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[274] = orientation
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ---- the choice of scale -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7, 128, 256])
def test_reduction_picks_the_smallest_scale_whose_picture_still_covers_size(size):
    for shorter in range(1, 8 * size + 20):
        denominator = reduction(shorter, shorter + 13, size)
        assert denominator in (1, 2, 4, 8)
        if shorter <= size:
            assert denominator == 1  # nothing to scale: decoded whole, as today
            continue
        assert shorter >= size * denominator
        assert -(-shorter // denominator) >= size  # so the decoded array (libjpeg rounds a side up) is too
        if denominator < 8:
            assert shorter < size * 2 * denominator  # the next scale down would be too small
    s = size
    if s > 1:
        # 2s - 1 rows would halve to s rows in the decoded array, the last one only half picture: not counted
        assert (reduction(2 * s, 9 * s, s), reduction(2 * s - 1, 9 * s, s), reduction(2 * s + 1, 9 * s, s)) == (2, 1, 2)
        assert (reduction(8 * s, 9 * s, s), reduction(8 * s - 1, 9 * s, s), reduction(4 * s, 9 * s, s)) == (8, 4, 4)
        assert reduction(9 * s, 8 * s - 1, s) == 4  # the shorter side counts, whichever it is
    assert reduction(1000, 1000, None) == 1


@pytest.mark.parametrize("height,width", [(427, 640), (375, 500), (101, 203), (333, 500), (17, 9)])
def test_opencv_and_pillow_decode_at_libjpegs_reduced_size(photos, height, width):
    """The ceil(side / denominator) that reduction() counts on, as two libjpeg wrappers decode it."""
    data = jpeg_bytes(photo(photos, height, width))
    flags = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
    for denominator, flag in flags.items():
        expected = (-(-height // denominator), -(-width // denominator))
        assert cv2.imdecode(np.frombuffer(data, np.uint8), flag).shape[:2] == expected
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (width // denominator, height // denominator))  # Pillow: "at least this size"
        assert (image.size[1], image.size[0]) == expected


@pytest.mark.parametrize("shorter,expected", [(128, 1), (129, 1), (255, 1), (256, 2), (257, 2), (511, 2), (512, 4), (1023, 4), (1024, 8), (1100, 8)])
def test_encoder_decodes_at_the_chosen_scale_and_stores_the_full_decodes_size(photos, shorter, expected):
    """Right at the boundaries: 2x resize halves, 2x resize - 1 does not (its half is 127.5 rows of picture)."""
    data = jpeg_bytes(photo(photos, shorter, shorter + 61))
    pixels, oriented, reoriented, denominator = ImageEncoder("jpeg", resize=128).pixels(data)
    assert denominator == expected and not oriented and not reoriented
    assert pixels.shape == full_resize(data, 128).shape  # same size as a full decode, whatever the scale
    assert min(pixels.shape[:2]) == 128
    # the decode it chose was large enough: the reduced image itself, as libjpeg gives it
    if expected > 1:
        flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[expected]
        assert min(cv2.imdecode(np.frombuffer(data, np.uint8), flag).shape[:2]) >= 128


def test_images_not_larger_than_resize_are_untouched(photos):
    for height, width in ((128, 300), (100, 90)):
        data = jpeg_bytes(photo(photos, height, width))
        dct, none = ImageEncoder("jpeg", resize=128).encode(data), ImageEncoder("jpeg", resize=128, reduce="none").encode(data)
        assert dct == none and dct.reduced == 1 and (dct.height, dct.width) == (height, width)


# ---- what is decoded how -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_turned_images_reduce_and_match_the_full_decodes_shape(photos, orientation):
    rgb = photo(photos, 300, 520)  # stored wide; 6 and 8 show it tall
    data = exif_jpeg(rgb, orientation)
    for exif in ("apply", "ignore"):
        dct = ImageEncoder("png", resize=70, exif=exif)
        none = ImageEncoder("png", resize=70, exif=exif, reduce="none")
        a, oriented, reoriented, denominator = dct.pixels(data)
        b, *_ = none.pixels(data)
        assert denominator == 4 and oriented and reoriented == (exif == "apply")  # ceil(300/4) = 75 >= 70
        turned = exif == "apply" and orientation != 3
        assert a.shape == b.shape == ((121, 70, 3) if turned else (70, 121, 3))
        assert mean_difference(a, b) < 3.5  # 3.06: 75 -> 70 rows, the softest case (a reduction just above resize)
    encoded = ImageEncoder("png", resize=70).encode(data)
    assert (encoded.height, encoded.width, encoded.reduced, encoded.reoriented) == ((121, 70) if orientation != 3 else (70, 121)) + (4, True)


def test_gray_and_cmyk_jpegs_reduce_with_every_channel_setting(photos):
    rgb = photo(photos, 400, 600, 1)
    gray = jpeg_bytes(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    cmyk = cmyk_jpeg_bytes(rgb)
    colour = jpeg_bytes(rgb)
    cases = [  # (bytes, channels, the full decode's flag, the stored pixels' shape)
        (gray, None, cv2.IMREAD_GRAYSCALE, (100, 150)),
        (gray, 3, cv2.IMREAD_COLOR, (100, 150, 3)),
        (colour, 1, cv2.IMREAD_GRAYSCALE, (100, 150)),
        (cmyk, None, cv2.IMREAD_COLOR, (100, 150, 3)),
        (cmyk, 1, cv2.IMREAD_GRAYSCALE, (100, 150)),
    ]
    for data, channels, flag, shape in cases:
        pixels, _, _, denominator = ImageEncoder("png", resize=100, channels=channels).pixels(data)
        assert denominator == 4 and pixels.shape == shape
        assert mean_difference(pixels, full_resize(data, 100, flag)) < 2
        encoded = RawEncoder(resize=100, channels=channels).encode(data)
        assert (encoded.height, encoded.width, encoded.channels, encoded.reduced) == (100, 150, 1 if len(shape) == 2 else 3, 4)


def test_png_and_pixel_arrays_are_decoded_whole_as_before(photos):
    rgb = photo(photos, 400, 600)
    data = png_bytes(rgb)
    for encoder in (ImageEncoder("jpeg", resize=100), RawEncoder(resize=100)):
        dct = encoder.encode(data)
        assert dct.reduced == 1 and (dct.height, dct.width) == (100, 150)
        none = type(encoder)(**({"format": "jpeg"} if isinstance(encoder, ImageEncoder) else {}), resize=100, reduce="none").encode(data)
        assert dct == none
        assert encoder.encode(rgb).reduced == 1


def test_reduce_none_gives_the_full_decode_and_inter_area_exactly(photos):
    for i, (height, width) in enumerate(((427, 640), (375, 500), (1024, 700), (255, 255), (200, 300))):
        data = jpeg_bytes(photo(photos, height, width, i))
        expected = cv2.imencode(".jpg", full_resize(data, 128), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        encoded = ImageEncoder("jpeg", resize=128, reduce="none").encode(data)
        assert encoded.data == expected and encoded.reduced == 1
        raw = RawEncoder(resize=128, reduce="none").encode(data)
        assert raw.data == cv2.cvtColor(full_resize(data, 128), cv2.COLOR_BGR2RGB).tobytes()
        # ... and dct differs from it only where a reduction applies
        assert (ImageEncoder("jpeg", resize=128).encode(data).data == expected) == (reduction(height, width, 128) == 1)


def test_reduced_output_stays_close_to_the_full_decode(photos):
    """Measured on these photos: 0.5 to 2.2 grey levels on average (1.4 over all), the china photo's detail the most:
    the reduced decode is a box filter already, so the result is a little softer than one INTER_AREA."""
    differences = []
    for i in range(8):
        data = jpeg_bytes(photo(photos, 375 + 11 * i, 500 + 17 * i, i))
        for size in (64, 128):
            a = ImageEncoder("png", resize=size).pixels(data)
            b = ImageEncoder("png", resize=size, reduce="none").pixels(data)
            assert a[3] > 1 and b[3] == 1
            differences.append(mean_difference(a[0], b[0]))
    assert max(differences) < 2.5
    assert np.mean(differences) < 1.6


def test_the_max_pixels_guard_is_on_the_stored_size_not_the_reduced_one(photos):
    data = jpeg_bytes(photo(photos, 400, 600))
    with pytest.raises(EncodeError, match="600x400 is over max_pixels=100000"):
        ImageEncoder("jpeg", resize=50, max_pixels=100_000).encode(data)  # 1/8 would be 50x75: still refused


def test_reduce_is_dct_or_none(photos):
    for make in (lambda r: ImageEncoder("png", resize=8, reduce=r), lambda r: RawEncoder(resize=8, reduce=r)):
        assert make("dct").describe()["reduce"] == "dct" and make("none").describe()["reduce"] == "none"
        with pytest.raises(ConfigError, match=r"encoder.reduce='fast': choose dct .* or none"):
            make("fast")
    assert "reduce" not in PassthroughEncoder().describe()


def test_every_encoder_with_resize_has_reduce_defaulting_to_dct():
    from test_config import choices, composed, stages_of

    with_resize = [c for c in choices("encoder") if "resize" in composed(f"encoder={c}").encoder]
    assert set(with_resize) == {"jpeg", "png", "raw", "tiff", "webp"}
    for choice in with_resize:
        assert composed(f"encoder={choice}").encoder.reduce == "dct"
        assert stages_of(composed(f"encoder={choice}", "encoder.reduce=none"))["encoder"].describe()["reduce"] == "none"


def test_reductions_survive_the_manifest_for_resume():
    result = ShardResult("a", "train", 3, 10, "0" * 64, {0: 3}, {"png": 3}, reductions={1: 1, 8: 2})
    assert ShardResult.from_dict(json.loads(json.dumps(result.as_dict()))) == result


# ---- runs --------------------------------------------------------------------------------------------------------


@pytest.fixture
def mixed_folder(tmp_path, photos):
    """root/<class>/<name>: JPEGs that decode at 1/1, 1/2, 1/4 and 1/8 for resize=48, an EXIF-turned one, a gray
    one and a PNG. Returns (root, {name: expected denominator})."""
    root = tmp_path / "mixed"
    plan = {  # name: (height, width, kind, denominator for resize=48)
        "a/small.jpg": (40, 60, "jpeg", 1), "a/just.jpg": (94, 130, "jpeg", 1), "a/half.jpg": (96, 150, "jpeg", 2),
        "a/quarter.jpg": (200, 192, "jpeg", 4), "b/eighth.jpg": (400, 500, "jpeg", 8), "b/phone.jpg": (300, 410, "exif", 4),
        "b/gray.jpg": (150, 100, "gray", 2), "b/drawing.png": (400, 500, "png", 1),
    }  # fmt: skip
    expected = {}
    for i, (name, (height, width, kind, denominator)) in enumerate(sorted(plan.items())):
        rgb = photo(photos, height, width, i)
        data = {"jpeg": jpeg_bytes, "png": png_bytes, "gray": lambda x: jpeg_bytes(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)),
                "exif": lambda x: exif_jpeg(x, 6)}[kind](rgb)  # fmt: skip
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        expected[name] = denominator
    return root, expected


def convert_folder(root, out, encoder, workers: int = 1, verify: bool = False) -> dict:
    return convert(
        name="mixed", source=ImageDirSource(str(root)), labels=SubdirLabels(), splitter=NoSplit("train"), encoder=encoder,
        writer=TFRecordWriter(shard_size=3, features=FIELDS), executor=LocalExecutor(workers), output_dir=str(out), progress=False,
        verify=verify,
    )  # fmt: skip


def test_summary_counts_how_every_image_was_decoded(tmp_path, mixed_folder):
    root, expected = mixed_folder
    out = tmp_path / "out"
    summary = convert_folder(root, out, ImageEncoder("jpeg", resize=48), verify=True)  # verify decodes every image
    counts = {f"1/{d}": sum(1 for v in expected.values() if v == d) for d in (1, 2, 4, 8)}
    assert counts == {"1/1": 3, "1/2": 2, "1/4": 2, "1/8": 1}
    assert summary["encoder"]["reduce"] == "dct" and summary["encoder"]["decoded_at"] == counts
    assert sum(summary["encoder"]["decoded_at"].values()) == summary["num_records"] == len(expected)
    assert json.loads((out / "summary.json").read_text())["encoder"] == summary["encoder"]
    for name, record in records(out, summary).items():  # each stored image has the full decode's size
        height, width = (410, 300) if name == "b/phone.jpg" else {n: (h, w) for n, h, w in _sizes(root)}[name]
        assert (record["image/width"], record["image/height"]) == (resized_size(height, width, 48) or (width, height))
    none = convert_folder(root, tmp_path / "none", ImageEncoder("jpeg", resize=48, reduce="none"))
    assert none["encoder"]["decoded_at"] == {"1/1": len(expected), "1/2": 0, "1/4": 0, "1/8": 0}
    plain = convert_folder(root, tmp_path / "plain", ImageEncoder("jpeg"))  # no resize: nothing to reduce
    assert plain["encoder"]["decoded_at"]["1/1"] == len(expected)
    assert "decoded_at" not in convert_folder(root, tmp_path / "pass", PassthroughEncoder())["encoder"]


def _sizes(root):
    for path in sorted(root.rglob("*.*")):
        image = Image.open(path)
        yield str(path.relative_to(root)), image.height, image.width


@pytest.mark.slow
def test_dct_runs_give_the_same_bytes_every_time_and_with_any_worker_count(tmp_path, mixed_folder):
    root, _ = mixed_folder
    runs = [convert_folder(root, tmp_path / f"run{i}", RawEncoder(resize=48), workers) for i, workers in enumerate((1, 1, 2))]
    shards = [[(s["path"], s["sha256"]) for s in run["shards"]] for run in runs]
    assert shards[0] == shards[1] == shards[2] and len(shards[0]) == 3
    for i in (1, 2):
        for shard in runs[0]["shards"]:
            assert (tmp_path / f"run{i}" / shard["path"]).read_bytes() == (tmp_path / "run0" / shard["path"]).read_bytes()
    assert runs[0]["encoder"]["decoded_at"] == runs[2]["encoder"]["decoded_at"]


@pytest.mark.slow
def test_tensorflow_reads_the_reduced_records(tmp_path, mixed_folder, tf):
    root, expected = mixed_folder
    out = tmp_path / "out"
    summary = convert_folder(root, out, ImageEncoder("jpeg", resize=48, quality=98))
    full = ImageEncoder("png", resize=48, reduce="none")
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string), "image/height": tf.io.FixedLenFeature([], tf.int64),
            "image/width": tf.io.FixedLenFeature([], tf.int64), "image/filename": tf.io.FixedLenFeature([], tf.string)}  # fmt: skip
    seen, differences = 0, {}
    for shard in summary["shards"]:
        for raw in tf.data.TFRecordDataset(str(out / shard["path"])):
            example = tf.io.parse_single_example(raw, spec)
            image = tf.io.decode_jpeg(example["image/encoded"], channels=3, dct_method="INTEGER_ACCURATE").numpy()
            assert image.shape[:2] == (example["image/height"].numpy(), example["image/width"].numpy())
            name = example["image/filename"].numpy().decode()
            reference = full.pixels((root / name).read_bytes())[0]
            reference = cv2.cvtColor(reference, cv2.COLOR_GRAY2RGB if reference.ndim == 2 else cv2.COLOR_BGR2RGB)
            opencv = cv2.cvtColor(cv2.imdecode(np.frombuffer(example["image/encoded"].numpy(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            differences[name] = (mean_difference(image, opencv), mean_difference(image, reference))
            seen += 1
    assert max(tf_cv for tf_cv, _ in differences.values()) < 0.5  # TensorFlow (islow, as OpenCV) reads what OpenCV wrote
    # against a full decode + INTER_AREA of the input: the reduction's softening plus the stored JPEG's own loss
    assert max(full for _, full in differences.values()) < 5
    assert seen == len(expected) == summary["num_records"]
