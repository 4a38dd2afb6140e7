"""TFDS metadata: tfds.builder_from_directory reads prep's TFRecord runs (as_dataset, as_dataframe), with the
split sizes, class names, image shapes and encodings of the run; runs TFDS cannot read get no TFDS files."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO, crop, make_class_folders, png_bytes

from prep.core.errors import ConfigError
from prep.encoders.passthrough import PassthroughEncoder
from prep.encoders.raw import RawEncoder
from prep.executors.local import LocalExecutor
from prep.labels.embedded import EmbeddedLabels
from prep.labels.space import SpaceLabels
from prep.labels.subdirs import SubdirLabels
from prep.pipeline import convert
from prep.sources.digits import DigitsSource
from prep.sources.image_dir import ImageDirSource
from prep.split import NoSplit, StratifiedSplit
from prep.writers import TFRecordWriter, tfds_metadata

TFDS_KEYS = {"image": "encoded", "label": "label", "image/filename": "filename"}  # conf/features/tfds.yaml
SLIM = {
    "image/encoded": "encoded", "image/format": "format", "image/height": "height", "image/width": "width",
    "image/channels": "channels", "image/class/label": "label", "image/class/text": "text", "image/filename": "filename",
}
CLASSES = ("daisy", "rose", "tulip")


@pytest.fixture(scope="session")
def tfds():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow_datasets

    return tensorflow_datasets


@pytest.fixture
def flowers(tmp_path, photos):
    """root/<class>/<nnn>.png, 3 classes x 8 images of varied sizes."""
    root = tmp_path / "flowers"
    make_class_folders(root, photos, CLASSES, per_class=8, ext=".png")
    return root


def run(out, root, *, writer=None, splitter=None, labels=None, name="flowers", **kwargs):
    return convert(
        name=name, source=ImageDirSource(str(root)), labels=labels or SubdirLabels(),
        splitter=splitter or NoSplit("train"), encoder=PassthroughEncoder(),
        writer=writer or TFRecordWriter(shard_size=5, features=SLIM), executor=LocalExecutor(1),
        output_dir=str(out), progress=False, **kwargs,
    )


def rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.mark.slow
def test_tfrecord_run_loads_with_tfds(tmp_path, flowers, tfds):
    out = tmp_path / "run"
    summary = run(out, flowers, splitter=StratifiedSplit(0.25, 0.25, seed=1))
    assert sorted(m["path"] for m in summary["metadata_files"]) == ["dataset_info.json", "features.json", "image.class.label.labels.txt"]
    assert summary["tfds"] == {"written": True, "notes": []}

    builder = tfds.builder_from_directory(str(out))
    assert {name: info.num_examples for name, info in builder.info.splits.items()} == {
        name: split["num_records"] for name, split in summary["splits"].items()
    }
    assert {name: info.num_shards for name, info in builder.info.splits.items()} == {"train": 3, "validation": 2, "test": 2}
    label = builder.info.features["image/class/label"]
    assert label.names == list(CLASSES)
    image = builder.info.features["image/encoded"]
    assert (image.shape, image.dtype, image.encoding_format) == ((None, None, 3), np.uint8, "png")
    assert builder.info.supervised_keys == ("image/encoded", "image/class/label")

    seen = 0
    for split in builder.info.splits:
        for example in tfds.as_numpy(builder.as_dataset(split=split)):
            name = example["image/filename"].decode()
            np.testing.assert_array_equal(example["image/encoded"], rgb(flowers / name))
            assert label.int2str(example["image/class/label"]) == name.split("/")[0] == example["image/class/text"].decode()
            assert example["image/height"] == example["image/encoded"].shape[0]
            seen += 1
    assert seen == 24

    assert len(list(builder.as_dataset(split="train[:10%]"))) == 1  # 10% of 12
    assert len(list(builder.as_dataset(split="train[:50%]+test"))) == 6 + 6
    frame = tfds.as_dataframe(builder.as_dataset(split="validation"), builder.info)
    assert len(frame) == 6 and "image/encoded" in frame.columns
    image, target = next(iter(builder.as_dataset(split="test", as_supervised=True)))
    assert image.dtype.name == "uint8" and image.shape[-1] == 3 and 0 <= int(target) < 3


def test_metadata_files_are_the_bytes_tfds_writes(tmp_path, flowers, tfds):
    """TFDS's own write_metadata, given the same features and split infos, writes the same files."""
    out = tmp_path / "run"
    summary = run(out, flowers, writer=TFRecordWriter(shard_size=5, features=TFDS_KEYS), splitter=StratifiedSplit(0.25, 0.0, seed=1))
    ours = {name: (out / name).read_bytes() for name in ("dataset_info.json", "features.json", "label.labels.txt")}
    theirs = tmp_path / "tfds"
    theirs.mkdir()
    for shard in summary["shards"]:
        shutil.copy(out / shard["path"], theirs / shard["path"])
    info = json.loads(ours["dataset_info.json"])
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
        "label": tfds.features.ClassLabel(names=list(CLASSES)),
        "image/filename": tfds.features.Text(),
    })
    splits = [tfds.core.SplitInfo(name=s["name"], shard_lengths=[int(n) for n in s["shardLengths"]], num_bytes=int(s["numBytes"]), filename_template=None)
              for s in info["splits"]]
    tfds.folder_dataset.write_metadata(
        data_dir=str(theirs), features=features, split_infos=splits, check_data=False,
        description=info["description"], supervised_keys=("image", "label"),
    )
    for name, data in ours.items():
        assert (theirs / name).read_bytes() == data, name


def test_integer_labels_mixed_images_and_a_limit(tmp_path, imagenet_folder, tfds):
    """ImageNet-like: integer labels (ClassLabel(num_classes=max+1)), JPEG and PNG, gray and colour."""
    out = tmp_path / "run"
    summary = run(out, imagenet_folder.root, labels=SpaceLabels(str(imagenet_folder.labels)), limit=12, name="imagenet_val",
                  writer=TFRecordWriter(shard_size=5, features=TFDS_KEYS, pattern="{dataset}-{split}-{index:05d}.tfrecord"))
    assert summary["num_records"] == 12
    builder = tfds.builder_from_directory(str(out))
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["splits"][0]["filepathTemplate"] == "{DATASET}-{SPLIT}-{SHARD_INDEX}.tfrecord"
    assert builder.info.features["label"].num_classes == max(imagenet_folder.label_ids[:12]) + 1
    image = builder.info.features["image"]
    # formats vary; gray and colour: 3 channels declared, grayscale decoded to 3 (as TFDS's own ImageFolder does)
    assert image.shape == (None, None, 3) and image.encoding_format is None
    expected = dict(zip(imagenet_folder.names[:12], imagenet_folder.label_ids[:12]))
    got = {ex["image/filename"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split="train"))}
    assert {name: int(ex["label"]) for name, ex in got.items()} == expected
    for name, example in got.items():
        decoded = cv2.imdecode(np.frombuffer(imagenet_folder.bytes_of(name), np.uint8), cv2.IMREAD_UNCHANGED)
        assert example["image"].shape[:2] == decoded.shape[:2] and example["image"].shape[2] == 3
    assert len(list(builder.as_dataset(split="train[:10%]"))) == 1


def test_raw_pixels_load_as_uint8_arrays(tmp_path, tfds):
    from sklearn.datasets import load_digits

    out = tmp_path / "run"
    summary = convert(
        name="digits", source=DigitsSource(), labels=EmbeddedLabels(), splitter=NoSplit("train"), encoder=RawEncoder(),
        writer=TFRecordWriter(shard_size=600, features={"image": "encoded", "label": "label", "height": "height"}),
        executor=LocalExecutor(1), output_dir=str(out), progress=False, limit=100,
    )
    assert summary["image_formats"] == {"raw": 100}
    builder = tfds.builder_from_directory(str(out))
    image = builder.info.features["image"]
    assert (image.shape, image.dtype) == ((8, 8, 1), np.uint8)
    assert builder.info.features["label"].num_classes == 10
    digits = load_digits()
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    assert len(examples) == 100
    for i, example in enumerate(examples):
        # DigitsSource scales 0..16 to 0..255; prep's own reading of the same record is the reference
        assert example["image"].dtype == np.uint8 and example["label"] == digits.target[i] and example["height"] == 8
    from prep.load import records

    for example, record in zip(examples, records(str(out))):
        assert example["image"].tobytes() == record["image"]


def test_features_tfds_reads_like_image_folder(tmp_path, flowers, tfds):
    """features=tfds: the keys and feature types of tfds.ImageFolder's own output."""
    folder = tmp_path / "image_folder" / "train"
    shutil.copytree(flowers, folder)
    theirs = tfds.ImageFolder(str(tmp_path / "image_folder"))
    out = tmp_path / "run"
    run(out, flowers, writer=TFRecordWriter(shard_size=5, features=TFDS_KEYS))
    ours = tfds.builder_from_directory(str(out))
    assert set(ours.info.features) == set(theirs.info.features) == set(TFDS_KEYS)
    for key in TFDS_KEYS:
        assert type(ours.info.features[key]) is type(theirs.info.features[key]), key
    assert ours.info.features["label"].names == theirs.info.features["label"].names
    assert ours.info.supervised_keys == theirs.info.supervised_keys
    mine = ours.as_dataset(split="train").element_spec
    assert {k: (v.dtype, v.shape.rank) for k, v in mine.items()} == {
        k: (v.dtype, v.shape.rank) for k, v in theirs.as_dataset(split="train").element_spec.items()
    }


def test_a_shard_of_skipped_images_is_a_shard_of_length_0(tmp_path, photos, tfds):
    root = tmp_path / "imgs"
    for c, good in (("a", True), ("b", False), ("c", True)):
        (root / c).mkdir(parents=True)
        for i in range(4):
            (root / c / f"{i}.png").write_bytes(png_bytes(crop(photos, i)) if good else b"not an image at all")
    out = tmp_path / "run"
    summary = run(out, root, writer=TFRecordWriter(shard_size=4, features=TFDS_KEYS), name="gaps")
    assert [s["path"] for s in summary["shards"]] == ["gaps-train.tfrecord-00000-of-00003", "gaps-train.tfrecord-00002-of-00003"]
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["splits"][0]["shardLengths"] == ["4", "0", "4"]
    builder = tfds.builder_from_directory(str(out))
    labels = [int(ex["label"]) for ex in tfds.as_numpy(builder.as_dataset(split="train"))]
    assert labels == [0] * 4 + [2] * 4


@pytest.mark.parametrize(
    "writer, why",
    [
        (TFRecordWriter(shard_size=5, features=TFDS_KEYS, compression="gzip"), "writer.compression=gzip"),
        (TFRecordWriter(shard_size=5, features=TFDS_KEYS, pattern="data_{index}.tfrecord"), "{index}"),
        (TFRecordWriter(shard_size=5, features=TFDS_KEYS, pattern="{split}/part-{number:05d}"), "{number:05d}"),
        (TFRecordWriter(shard_size=5, features={"image": "encoded", "label": "label:float"}), "label:float"),
    ],
)
def test_runs_tfds_cannot_read_get_no_tfds_files_and_one_line(tmp_path, flowers, caplog, writer, why):
    """One line says why; a warning, except for shard names the user chose (seed 002's data_{index}.tfrecord),
    where a calm info line is enough."""
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        summary = run(out, flowers, writer=writer)
    assert summary["metadata_files"] == [] and not (out / "dataset_info.json").exists() and not (out / "features.json").exists()
    assert summary["tfds"]["written"] is False and why in summary["tfds"]["reason"]
    lines = [r for r in caplog.records if "TFDS" in r.getMessage()]
    assert len(lines) == 1 and why in lines[0].getMessage() and "no TFDS metadata" in lines[0].getMessage()
    assert lines[0].levelno == (logging.INFO if "{" in why else logging.WARNING)


@pytest.mark.parametrize("name, split, why", [("my-flowers", "train", "name='my-flowers'"), ("flowers", "all", "split 'all'"), ("flowers", "a.b", "split 'a.b'")])
def test_names_tfds_refuses_get_no_tfds_files(tmp_path, flowers, name, split, why):
    out = tmp_path / "run"
    summary = run(out, flowers, name=name, splitter=NoSplit(split))
    assert summary["metadata_files"] == [] and why in summary["tfds"]["reason"]


def test_class_names_a_labels_file_cannot_hold_keep_the_class_count(tmp_path, photos, tfds):
    root = tmp_path / "imgs"
    for c in (" spaced", "plain"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            (root / c / f"{i}.png").write_bytes(png_bytes(crop(photos, i)))
    out = tmp_path / "run"
    summary = run(out, root, writer=TFRecordWriter(shard_size=5, features=TFDS_KEYS), name="odd")
    assert [m["path"] for m in summary["metadata_files"]] == ["dataset_info.json", "features.json"]
    assert "declared as ClassLabel(num_classes=2) without names" in summary["tfds"]["notes"][0]
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.features["label"].num_classes == 2
    assert sorted(int(ex["label"]) for ex in tfds.as_numpy(builder.as_dataset(split="train"))) == [0, 0, 0, 1, 1, 1]


def test_labels_files_of_two_keys_must_not_clash():
    class Listing:
        class_names = ["a", "b"]

    writer = TFRecordWriter(shard_size=5, features={"image": "encoded", "a/b": "label", "a.b": "label"})
    the_plan = tfds_metadata.plan(writer, "tfrecord", "x", ["train"], Listing())
    assert "would share the TFDS labels file 'a.b.labels.txt'" in the_plan.reason and the_plan.paths() == []


def test_template_of_patterns():
    assert tfds_metadata.template_of("{dataset}-{split}.tfrecord-{index:05d}-of-{count:05d}")[0] == "{DATASET}-{SPLIT}.tfrecord-{SHARD_X_OF_Y}"
    assert tfds_metadata.template_of("{split}/{{x}}-{index:05}")[0] == "{SPLIT}/{{x}}-{SHARD_INDEX}"
    for bad in ("data_{index}.tfrecord", "{split}-{index:04d}", "{split!r}-{index:05d}", "{split}-{number:05d}"):
        template, why = tfds_metadata.template_of(bad)
        assert template is None and "TFDS names shards" in why


# ------------------------------------------------------------------ the run-level metadata mechanism


def test_verify_checks_the_metadata_files(tmp_path, flowers):
    from prep.tools.verify import verify_run

    out = tmp_path / "run"
    run(out, flowers, writer=TFRecordWriter(shard_size=5, features=TFDS_KEYS))
    assert all(ok for ok, _ in verify_run(str(out)))
    info = out / "dataset_info.json"
    original = info.read_bytes()
    info.write_bytes(original.replace(b'1.0.0', b'1.0.1'))
    failed = [line for ok, line in verify_run(str(out)) if not ok]
    assert failed and failed[0].startswith("FAIL dataset_info.json")
    info.unlink()
    failed = [line for ok, line in verify_run(str(out)) if not ok]
    assert failed == ["FAIL dataset_info.json: missing (summary.json lists it)"]
    proc = subprocess.run([sys.executable, "-m", "prep.verify", str(out)], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1 and "FAIL dataset_info.json" in proc.stdout


def test_overwrite_removes_the_old_runs_metadata_files(tmp_path, flowers, imagenet_folder):
    out = tmp_path / "run"
    run(out, flowers, writer=TFRecordWriter(shard_size=5, features=TFDS_KEYS))
    assert (out / "label.labels.txt").exists()
    summary = run(out, imagenet_folder.root, labels=SpaceLabels(str(imagenet_folder.labels)), overwrite=True,
                  writer=TFRecordWriter(shard_size=5, features=TFDS_KEYS))
    assert not (out / "label.labels.txt").exists()  # integer labels: no class-name file
    assert sorted(os.listdir(out)) == sorted([".prep-lock", "dataset_info.json", "features.json", "labels.csv", "plan.json", "report.html", "summary.json", *(s["path"] for s in summary["shards"])])


def test_resume_writes_the_metadata(tmp_path, flowers, tfds):
    from test_output_safety import shard_task_dies

    out = tmp_path / "run"
    with shard_task_dies(2):
        run(out, flowers, writer=TFRecordWriter(shard_size=5, features=TFDS_KEYS))
    assert not (out / "dataset_info.json").exists()
    summary = run(out, flowers, writer=TFRecordWriter(shard_size=5, features=TFDS_KEYS), resume=True)
    assert len(summary["metadata_files"]) == 3
    assert tfds.builder_from_directory(str(out)).info.splits["train"].num_examples == 24


def test_a_shard_where_dataset_info_json_goes_is_refused_before_writing(tmp_path, flowers):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="dataset_info.json"):
        run(out, flowers, writer=TFRecordWriter(num_shards=1, shard_size=None, features=TFDS_KEYS, pattern="dataset_info.json"))
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tfrecord", "arrayrecord"])
def test_a_gray_and_colour_run_loads_every_record_through_tfds(tmp_path, imagenet_folder, tfds, fmt):
    """ImageNet holds grayscale JPEGs among colour ones (and a PNG named .JPEG, a CMYK JPEG): features.json declares
    3 channels, and TFDS decodes every record of every split to height x width x 3: as_dataset on TFRecord,
    as_data_source on ArrayRecord (the reader TFDS has for it)."""
    from prep.writers import ArrayRecordWriter

    out = tmp_path / "run"
    writer = TFRecordWriter if fmt == "tfrecord" else ArrayRecordWriter
    pattern = "{dataset}-{split}.%s-{index:05d}-of-{count:05d}" % ("tfrecord" if fmt == "tfrecord" else "array_record")
    summary = run(out, imagenet_folder.root, labels=SpaceLabels(str(imagenet_folder.labels)), splitter=StratifiedSplit(0.2, 0.2, seed=0),
                  writer=writer(shard_size=5, features=TFDS_KEYS, pattern=pattern))
    assert summary["image_shapes"]["channels"] == [1, 3] and summary["tfds"]["written"], summary["tfds"]
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.features["image"].shape == (None, None, 3)
    seen = {}
    for split in summary["splits"]:
        if fmt == "tfrecord":
            examples = tfds.as_numpy(builder.as_dataset(split=split))
        else:
            source = builder.as_data_source(split=split)
            examples = (source[i] for i in range(len(source)))
        for example in examples:
            name = example["image/filename"]
            seen[name.decode() if isinstance(name, bytes) else name] = example["image"].shape
    assert sorted(seen) == sorted(imagenet_folder.names)
    gray = next(n for n in imagenet_folder.names if n.endswith("00000003.JPEG"))
    assert seen[gray][2] == 3 and all(len(shape) == 3 and shape[2] == 3 for shape in seen.values())
