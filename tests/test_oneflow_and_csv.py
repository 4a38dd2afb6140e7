"""OFRecord output, the pixel-CSV source, raw pixels, the two seed presets and prep.inspect."""

from __future__ import annotations

import json
import os
import re

import cv2
import numpy as np
import pytest
from conftest import run_prep

from prep.core.errors import EncodeError, InputError
from prep.formats import ofrecord
from prep.labels.embedded import EmbeddedLabels
from prep.load import records
from prep.run.listing import read_items
from prep.sources.pixel_csv import PixelCsvSource

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
    # 43 rows planned as 15 + 14 + 14 (shard_fill=even); the 3 bad rows, in the last shard, are skipped
    assert summary["num_records"] == 40 and [s["num_records"] for s in summary["shards"]] == [15, 14, 11]
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


def test_a_label_int32_cannot_hold_stops_the_run_with_one_line(tmp_path, oneflow_folder):
    # OFRecord labels are int32 in this preset: 2**32 + 1 used to be stored as 1 and verified as ok.
    root, label_file, _, _ = oneflow_folder
    lines = label_file.read_text().splitlines()
    name = next(iter(json.loads(lines[5])))
    lines[5] = json.dumps({name: 2**32 + 1})
    label_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    # workers=1: when a shard task fails, the process pool's workers are stopped with SIGTERM and, having
    # inherited __main__'s SIGTERM handler, each prints a KeyboardInterrupt traceback (an executor issue of
    # its own). Once pipeline.py calls writer.check_labels, this run stops before any worker starts.
    proc = run_prep("dataset=mnist_ofrecord", f"source.image_dir={root}", f"labels.path={label_file}", "executor.workers=1",
                    f"hydra.run.dir={out}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "label 4294967297 does not fit 'labels', stored as int32 (-2147483648..2147483647)" in errors[0]
    assert not (out / "summary.json").exists()
    # Record 5 is in part-1: never written. (Until pipeline.py calls writer.check_labels, the encoder's guard
    # stops the run and other finished parts stay for resume=true; none holds a wrapped label.)
    assert not (out / "train" / "part-1").exists()
    for part in (out / "train").glob("part-*") if (out / "train").exists() else []:
        with open(part, "rb") as f:
            assert all(0 <= ofrecord.decode_record(p)["labels"][1][0] <= 9 for _, p in ofrecord.read_records(f))


def test_a_header_line_in_a_label_file_is_one_line_from_the_cli(tmp_path, oneflow_folder):
    root, label_file, _, _ = oneflow_folder
    space = tmp_path / "val.txt"
    space.write_text("filename label\n" + "".join(f"{next(iter(json.loads(l)))} {i % 3}\n" for i, l in enumerate(label_file.read_text().splitlines())))
    proc = run_prep("dataset=images", f"source.image_dir={root}", f"labels.path={space}", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"error: {space}:1: label 'label' is not an integer, but 23 other labels are (labels.kind=auto); it looks like a header line: remove that line" in proc.stderr


def write_bytes(path, data: bytes):
    path.write_bytes(data)
    return path


def test_pixel_csv_byte_order_marks_are_not_part_of_labels_or_pixels(tmp_path):
    # Two exports joined with `cat`: each starts with a BOM.
    path = write_bytes(tmp_path / "joined.csv", b"\xef\xbb\xbf7,0,255\n1,3,4\n\xef\xbb\xbf2,9,8\n")
    source = PixelCsvSource(str(path), shape=[1, 2])
    listing = read_items(source, EmbeddedLabels())
    assert [item.label for item in listing.items] == [7, 1, 2] and listing.class_names is None
    assert [source.read(item.ref).tolist() for item in listing.items] == [[[0, 255]], [[3, 4]], [[9, 8]]]
    last_column = PixelCsvSource(str(write_bytes(tmp_path / "last.csv", b"\xef\xbb\xbf0,255,7\n")), shape=[1, 2], label_column=2)
    entry = last_column.labelled_entries()[0]
    assert entry.label == "7" and last_column.read(entry.ref).tolist() == [[0, 255]]


def test_pixel_csv_header_without_header_true_is_named(tmp_path):
    path = write_bytes(tmp_path / "mnist.csv", b"\xef\xbb\xbflabel,pixel0,pixel1\n1,0,0\n")
    with pytest.raises(InputError) as err:
        read_items(PixelCsvSource(str(path), shape=[1, 2]), EmbeddedLabels())
    assert str(err.value) == f"{path}:1: the first row is not pixel values ('pixel0' is not a number): if it is a header line, set source.header=true"
    listing = read_items(PixelCsvSource(str(path), shape=[1, 2], header=True), EmbeddedLabels())
    assert [item.label for item in listing.items] == [1]
    # Numbers as column names pass the pixel check; the label column gives the header away.
    numbered = write_bytes(tmp_path / "numbered.csv", b"label,0,1\n1,0,0\n2,0,0\n")
    with pytest.raises(InputError) as err:
        read_items(PixelCsvSource(str(numbered), shape=[1, 2]), EmbeddedLabels())
    assert str(err.value) == (
        f"{numbered}:1: label 'label' is not an integer, but 2 other labels are (labels.kind=auto); "
        "it looks like a header line: set source.header=true, or set labels.kind=name to read every label as a class name"
    )


def test_pixel_csv_kinds(tmp_path):
    path = write_bytes(tmp_path / "names.csv", b"cat,0,0\n10,0,0\n2,0,0\n")
    with pytest.raises(InputError, match=rf"^{path}:1: label 'cat' is not an integer \(labels.kind=int"):
        read_items(PixelCsvSource(str(path), shape=[1, 2]), EmbeddedLabels(kind="int"))
    listing = read_items(PixelCsvSource(str(path), shape=[1, 2]), EmbeddedLabels(kind="name"))
    assert listing.class_names == ["10", "2", "cat"] and [item.label for item in listing.items] == [2, 0, 1]


def test_pixel_csv_that_is_not_a_csv_file(tmp_path):
    with pytest.raises(InputError, match=f"^source.path={tmp_path}: is a folder, expected the pixel CSV file$"):
        PixelCsvSource(str(tmp_path)).labelled_entries()
    fifo = tmp_path / "rows.fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"not a regular file \(a FIFO, socket or device\)"):
        PixelCsvSource(str(fifo)).labelled_entries()
    one_line = write_bytes(tmp_path / "no_breaks.csv", b"1," + b"0," * (1 << 20))
    with pytest.raises(InputError, match=rf"^{one_line}:1: a line longer than 1048576 bytes"):
        PixelCsvSource(str(one_line), shape=[1, 2]).labelled_entries()
    utf16 = write_bytes(tmp_path / "utf16.csv", "1,0,0\n".encode("utf-16"))
    with pytest.raises(InputError, match=f"^{utf16}: looks like UTF-16 text; save it as UTF-8$"):
        PixelCsvSource(str(utf16), shape=[1, 2]).labelled_entries()
    latin1 = write_bytes(tmp_path / "latin1.csv", b"caf\xe9,0,0\n")
    with pytest.raises(InputError, match=rf"^{latin1}:1: the label b'caf\\xe9' is not UTF-8 text$"):
        PixelCsvSource(str(latin1), shape=[1, 2]).labelled_entries()


@pytest.mark.parametrize(
    "first, header, message",
    [
        # pandas' to_csv(index=False) numbers the columns: as data it would be an image of the numbers 1..16
        (",".join(str(i) for i in range(17)), False, "the first row numbers the columns (0,1,2,...): it is a header line, set source.header=true"),
        # header=true on a file without one would drop the first image without a word
        ("3," + ",".join(["7"] * 16), True, "source.header=true, but the first row is pixel values, not a header"),
    ],
)
def test_pixel_csv_header_is_never_guessed_wrong(tmp_path, first, header, message):
    from prep.core.errors import InputError
    from prep.sources.pixel_csv import PixelCsvSource

    path = tmp_path / "px.csv"
    path.write_text(first + "\n" + "\n".join(",".join([str(i % 3)] + ["9"] * 16) for i in range(4)) + "\n")
    with pytest.raises(InputError, match=re.escape(message)):
        PixelCsvSource(str(path), shape=[4, 4], header=header).labelled_entries()
