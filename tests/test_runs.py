"""Whole runs: the cifar10 preset, byte-identical reruns (also from a saved .hydra config), sweeps, loading."""

from __future__ import annotations

import csv
import json
import random

import cv2
import numpy as np
import pytest
from conftest import crop, png_bytes, run_prep

pytestmark = pytest.mark.slow
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture
def cifar_folder(tmp_path, photos):
    """Kaggle's CIFAR-10 layout: train/<id>.png (32x32) and trainLabels.csv "id,label" with class names, uneven classes."""
    root = tmp_path / "cifar10"
    (root / "train").mkdir(parents=True)
    rows = []
    for i in range(1, 121):
        cls = CLASSES[(i * 7) % 10 if i % 4 else (i % 3)]  # classes 0-2 get more images than the rest
        (root / "train" / f"{i}.png").write_bytes(png_bytes(crop(photos, i, size=32)))
        rows.append((i, cls))
    (root / "trainLabels.csv").write_text("id,label\n" + "".join(f"{i},{c}\n" for i, c in rows))
    return root


def shas(run_dir):
    return [s["sha256"] for s in json.loads((run_dir / "summary.json").read_text())["shards"]]


def cifar_args(root, out, *extra):
    return ("dataset=cifar10", f"source.image_dir={root / 'train'}", f"labels.path={root / 'trainLabels.csv'}", "writer.shard_size=30", f"hydra.run.dir={out}", *extra)


def test_cifar10_preset_splits_stratified_with_class_names(tmp_path, cifar_folder, tf):
    out = tmp_path / "run"
    run_prep(*cifar_args(cifar_folder, out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["label_map"] == {name: i for i, name in enumerate(CLASSES)}
    labels = list(csv.reader((cifar_folder / "trainLabels.csv").read_text().splitlines()[1:]))
    sizes = {CLASSES.index(c): sum(1 for _, x in labels if x == c) for c in CLASSES}
    for split, fraction in (("validation", 0.2), ("test", 0.1)):
        for label, size in sizes.items():
            assert abs(summary["splits"][split]["classes"].get(str(label), 0) - fraction * size) <= 1
    assert sum(s["num_records"] for s in summary["splits"].values()) == 120
    assert {s["split"] for s in summary["shards"]} == {"train", "validation", "test"}
    assert summary["shards"][0]["path"] == "cifar10-train.tfrecord-00000-of-00003"

    table = list(csv.DictReader((out / "labels.csv").read_text().splitlines()))
    assert [r["class_name"] for r in table] == CLASSES
    assert [int(r["validation"]) for r in table] == [summary["splits"]["validation"]["classes"].get(str(i), 0) for i in range(10)]

    # label map and image/class/text agree, splits are disjoint and their union is the input
    spec = {
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/class/text": tf.io.FixedLenFeature([], tf.string),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
    }
    seen = {}
    for shard in summary["shards"]:
        for record in tf.data.TFRecordDataset(str(out / shard["path"])):
            example = tf.io.parse_single_example(record, spec)
            name = example["image/filename"].numpy().decode()
            assert name not in seen
            seen[name] = shard["split"]
            assert CLASSES[int(example["image/class/label"])] == example["image/class/text"].numpy().decode()
            assert dict(labels)[name[: -len(".png")]] == example["image/class/text"].numpy().decode()
    assert sorted(seen) == sorted(f"{i}.png" for i in range(1, 121))


def test_runs_are_byte_identical_and_rerun_from_saved_config(tmp_path, cifar_folder):
    first, second, rerun = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run_prep(*cifar_args(cifar_folder, first))
    run_prep(*cifar_args(cifar_folder, second, "executor.workers=1"))
    assert shas(first) == shas(second)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (first, second))
    assert a["config_fingerprint"] == b["config_fingerprint"]
    for key in ("seconds", "records_per_second", "overrides", "config_fingerprint"):
        a.pop(key), b.pop(key)
    a["scan"].pop("seconds"), b["scan"].pop("seconds")
    assert a == b  # identical apart from timings

    run_prep("--config-path", str(first / ".hydra"), "--config-name", "config", f"hydra.run.dir={rerun}")
    assert shas(rerun) == shas(first)
    assert json.loads((rerun / "summary.json").read_text())["config_fingerprint"] == json.loads((first / "summary.json").read_text())["config_fingerprint"]

    other_seed = tmp_path / "d"
    run_prep(*cifar_args(cifar_folder, other_seed, "split.seed=1"))
    assert shas(other_seed) != shas(first)


def test_listing_order_does_not_change_the_shards(tmp_path, cifar_folder):
    run_prep(*cifar_args(cifar_folder, tmp_path / "a"))
    lines = (cifar_folder / "trainLabels.csv").read_text().splitlines()
    body = lines[1:]
    random.Random(5).shuffle(body)
    (cifar_folder / "trainLabels.csv").write_text("\n".join([lines[0], *body]) + "\n")
    run_prep(*cifar_args(cifar_folder, tmp_path / "b"))
    assert shas(tmp_path / "a") == shas(tmp_path / "b")


def test_shard_size_sweep_writes_job_summaries_and_a_table(tmp_path, tf):
    sweep_dir = tmp_path / "sweep"
    proc = run_prep("-m", "writer.shard_size=300,1000", "limit=600", f"hydra.sweep.dir={sweep_dir}")
    jobs = [json.loads((sweep_dir / str(n) / "summary.json").read_text()) for n in (0, 1)]
    assert [len(j["shards"]) for j in jobs] == [2, 1]
    assert [s["num_records"] for s in jobs[0]["shards"]] == [300, 300]
    rows = list(csv.DictReader((sweep_dir / "sweep_summary.csv").read_text().splitlines()))
    assert [(r["overrides"], r["shards"], r["records"], r["status"]) for r in rows] == [
        ("writer.shard_size=300", "2", "600", "ok"),
        ("writer.shard_size=1000", "1", "600", "ok"),
    ]
    assert "| job | overrides | status | shards | bytes | records | seconds | records_per_second |" in proc.stderr + proc.stdout

    bench = run_prep(str(sweep_dir), "--repeat", "1", module="prep.readbench")
    assert "read_records_per_second" in bench.stdout
    rows = list(csv.DictReader((sweep_dir / "sweep_summary.csv").read_text().splitlines()))
    assert all(float(r["read_records_per_second"]) > 0 for r in rows)


def test_load_round_trips_images_and_labels(tmp_path, cifar_folder, tf):
    from prep.load import records, tf_dataset

    out = tmp_path / "run"
    run_prep(*cifar_args(cifar_folder, out))
    pairs = [(image.numpy(), int(label)) for image, label in tf_dataset(str(out), "validation")]
    raw = list(records(str(out), "validation"))
    assert len(pairs) == len(raw) == json.loads((out / "summary.json").read_text())["splits"]["validation"]["num_records"]
    for (image, label), record in zip(pairs, raw):
        source = cv2.imread(str(cifar_folder / "train" / record["image/filename"].decode()))[..., ::-1]
        assert np.array_equal(image, source)
        assert label == record["image/class/label"]
    with pytest.raises(Exception, match="no split 'holdout'"):
        tf_dataset(str(out), "holdout")
