"""OFRecord output, the pixel-CSV source, raw pixels, the two seed presets and prep.inspect."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import run_prep
from prep.formats import ofrecord
from prep.load import records
from prep.sources import PixelCsvSource
from prep.errors import EncodeError

pytestmark = pytest.mark.slow


def digits_28(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Real handwritten digits at MNIST's 28x28 (scikit-learn's 8x8 digits, scaled up)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = np.rint(digits.images[:count] * 255 / 16).astype(np.uint8)
    return np.stack([cv2.resize(d, (28, 28), interpolation=cv2.INTER_LINEAR) for d in small]), digits.target[:count]


@pytest.fixture
def oneflow_folder(tmp_path):
    """Seed 000's layout: images/train_set/<n>_<label>.png and a JSON-lines label file."""
    images, labels = digits_28(23)
    root = tmp_path / "images" / "train_set"
    root.mkdir(parents=True)
    lines = []
    for i, (image, label) in enumerate(zip(images, labels)):
        name = f"{i:08d}_{label}.png"
        cv2.imwrite(str(root / name), image)
        lines.append(json.dumps({name: int(label)}))
    label_file = tmp_path / "images" / "label.txt"
    label_file.write_text("\n".join(lines) + "\n")
    return root, label_file, images, labels


def test_mnist_ofrecord_preset(tmp_path, oneflow_folder):
    root, label_file, images, labels = oneflow_folder
    out = tmp_path / "run"
    run_prep("dataset=mnist_ofrecord", f"source.image_dir={root}", f"labels.path={label_file}", f"hydra.run.dir={out}")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"] == "ofrecord"
    assert [s["path"] for s in summary["shards"]] == [f"train/part-{i}" for i in range(5)]
    assert [s["num_records"] for s in summary["shards"]] == [5, 5, 5, 4, 4]
    assert summary["features"] == {"images": "bytes", "labels": "int32"}

    # Framing: int64 little-endian length, then the message; labels stored as int32.
    data = (out / "train" / "part-0").read_bytes()
    payloads = [p for _, p in ofrecord.read_records(__import__("io").BytesIO(data))]
    assert len(payloads) == 5 and int.from_bytes(data[:8], "little") == len(payloads[0])
    assert ofrecord.decode_record(payloads[0])["labels"] == ("int32", [int(labels[0])])

    got = list(records(str(out)))
    assert [r["labels"] for r in got] == [int(l) for l in labels]
    for record, image in zip(got, images):
        assert np.array_equal(cv2.imdecode(np.frombuffer(record["images"], np.uint8), cv2.IMREAD_UNCHANGED), image)  # PNG is lossless


def test_more_parts_than_images_is_a_clear_error(tmp_path, oneflow_folder):
    root, label_file, _, _ = oneflow_folder
    proc = run_prep("dataset=mnist_ofrecord", f"source.image_dir={root}", f"labels.path={label_file}", "writer.num_shards=30", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode == 1
    assert "writer.num_shards=30 is more than the 23 images of split 'train'" in proc.stderr
    assert not (tmp_path / "run" / "train").exists()


def write_csv(path, images, labels, extra_lines=()):
    rows = [",".join(map(str, [int(l), *img.reshape(-1).tolist()])) for img, l in zip(images, labels)]
    path.write_text("\n".join([*rows, *extra_lines]) + "\n")


def test_mnist_csv_preset_raw_pixels_round_trip_with_tensorflow(tmp_path, tf):
    images, labels = digits_28(40)
    csv_path = tmp_path / "mnist_train_small.csv"
    bad = ["7," + ",".join(["0"] * 783), "3," + ",".join(["0"] * 783) + ",x", "5," + ",".join(["300"] * 784)]
    write_csv(csv_path, images, labels, bad)
    out = tmp_path / "run"
    run_prep("dataset=mnist_csv", f"source.path={csv_path}", "writer.shard_size=16", f"hydra.run.dir={out}")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_records"] == 40 and [s["num_records"] for s in summary["shards"]] == [16, 16, 8]
    assert summary["encoder"]["dtype"] == "uint8" and summary["encoder"]["channel_order"] == "RGB"
    assert [s["reason"] for s in summary["skipped"]] == [
        "line 41: expected 785 columns (label + 784 pixels), got 784",
        "line 42: non-numeric pixel 'x'",
        "line 43: pixel value 300 is not an integer in 0..255",
    ]
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
    dataset = tf.data.TFRecordDataset([str(out / s["path"]) for s in summary["shards"]])
    for i, record in enumerate(dataset):
        example = tf.io.parse_single_example(record, spec)
        pixels = np.frombuffer(example["image"].numpy(), np.uint8).reshape(28, 28)
        assert np.array_equal(pixels, images[i]) and int(example["label"]) == labels[i]
    assert i == 39


def test_pixel_csv_non_numeric_and_colour_rows(tmp_path):
    path = tmp_path / "rgb.csv"
    path.write_text("label,p...\n1," + ",".join(["255", "0", "0"] * 4) + "\n2," + ",".join(["a"] * 12) + "\n")
    source = PixelCsvSource(str(path), shape=[2, 2, 3], header=True)
    entries = source.labelled_entries()
    assert [(e.name, e.label) for e in entries] == [("rgb.csv:2", "1"), ("rgb.csv:3", "2")]
    red = source.read(entries[0].ref)
    assert red.shape == (2, 2, 3) and red[..., 0].min() == 255 and red[..., 1:].max() == 0  # red in channel 0
    with pytest.raises(EncodeError, match="line 3: non-numeric pixel 'a'"):
        source.read(entries[1].ref)


def test_raw_red_image_end_to_end(tmp_path):
    path = tmp_path / "red.csv"
    path.write_text("0," + ",".join(["255", "0", "0"] * 6) + "\n")
    out = tmp_path / "run"
    run_prep("dataset=mnist_csv", f"source.path={path}", "source.shape=[2,3,3]", f"hydra.run.dir={out}")
    record = next(records(str(out)))
    pixels = np.frombuffer(record["image"], np.uint8).reshape(record["height"], record["width"], record["channels"])
    assert pixels.shape == (2, 3, 3) and pixels[..., 0].min() == 255 and pixels[..., 1:].max() == 0


def test_inspect_prints_records_and_saves_a_contact_sheet(tmp_path, oneflow_folder):
    root, label_file, _, labels = oneflow_folder
    out = tmp_path / "run"
    run_prep("dataset=mnist_ofrecord", f"source.image_dir={root}", f"labels.path={label_file}", f"hydra.run.dir={out}")
    grid = tmp_path / "grid.png"
    proc = run_prep(str(out), "--grid", str(grid), "--count", "10", "--columns", "4", module="prep.inspect")
    assert f"labels: {labels[0]}" in proc.stdout
    assert "images: png 28x28x1, " in proc.stdout  # no shape keys in this preset: read from the PNG header
    sheet = cv2.imread(str(grid))
    assert sheet.shape == (3 * (96 + 22), 4 * 96, 3)
    assert sheet[:96, :96].std() > 10  # an image was drawn, not a blank cell
    one_part = run_prep(str(out / "train" / "part-1"), "-n", "1", module="prep.inspect")
    assert "record 0:" in one_part.stdout and f"labels: {labels[5]}" in one_part.stdout
