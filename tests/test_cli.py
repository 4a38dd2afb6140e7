"""`python -m prep` end to end in a subprocess, as users run it; TensorFlow reads back what was written."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import crop, png_bytes, run_prep

pytestmark = pytest.mark.slow


def seed_002_parser(tf):
    """The parser of seed 002 (images_to_tfrec.py), verbatim in substance."""

    def parser(data_record):
        feature_dict = {
            "label": tf.io.FixedLenFeature([], tf.int64),
            "height": tf.io.FixedLenFeature([], tf.int64),
            "width": tf.io.FixedLenFeature([], tf.int64),
            "chans": tf.io.FixedLenFeature([], tf.int64),
            "image": tf.io.FixedLenFeature([], tf.string),
        }
        sample = tf.io.parse_single_example(data_record, feature_dict)
        label = tf.cast(sample["label"], tf.int32)
        h = tf.cast(sample["height"], tf.int32)
        w = tf.cast(sample["width"], tf.int32)
        image = tf.io.decode_image(sample["image"], channels=3)
        image = tf.reshape(image, [h, w, 3])
        return image, label, sample["image"], sample["chans"]

    return parser


def test_imagenet_val_preset_is_read_back_by_tensorflow(tmp_path, imagenet_folder, tf):
    out = tmp_path / "run"
    run_prep(
        "dataset=imagenet_val",
        f"source.image_dir={imagenet_folder.root}",
        f"labels.path={imagenet_folder.labels}",
        "writer.shard_size=10",
        f"hydra.run.dir={out}",
    )
    summary = json.loads((out / "summary.json").read_text())
    assert [s["path"] for s in summary["shards"]] == ["data_0.tfrecord", "data_1.tfrecord", "data_2.tfrecord"]
    assert summary["features"] == {"chans": "int64", "height": "int64", "image": "bytes", "label": "int64", "width": "int64"}
    assert summary["splits"]["validation"]["num_records"] == 24
    assert (out / ".hydra" / "config.yaml").exists() and (out / "prep.log").exists()

    dataset = tf.data.TFRecordDataset([str(out / s["path"]) for s in summary["shards"]]).map(seed_002_parser(tf))
    got = [(image.numpy(), int(label), bytes(raw.numpy()), int(chans)) for image, label, raw, chans in dataset]
    assert [g[1] for g in got] == imagenet_folder.label_ids
    assert [g[2] for g in got] == [imagenet_folder.bytes_of(n) for n in imagenet_folder.names]
    chans = dict(zip(imagenet_folder.names, (g[3] for g in got)))
    assert chans["ILSVRC2012_val_00000003.JPEG"] == 1  # grayscale JPEG
    assert chans["ILSVRC2012_val_00000005.JPEG"] == 3  # CMYK JPEG: TensorFlow and OpenCV decode it to 3 channels
    for (image, _, raw, _), name in zip(got, imagenet_folder.names):
        reference = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        assert image.shape == reference.shape, name
        if name != "ILSVRC2012_val_00000005.JPEG":  # CMYK->RGB conversion differs between decoders
            assert np.abs(image.astype(int) - reference.astype(int)).mean() < 2, name


def test_default_run_is_the_digits_demo(tmp_path, tf):
    from sklearn.datasets import load_digits

    out = tmp_path / "run"
    proc = run_prep(f"hydra.run.dir={out}")
    assert "wrote 1797 records (0 skipped) in 2 shards" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["dataset"], summary["format"], summary["num_records"]) == ("digits", "tfrecord", 1797)
    assert [s["path"] for s in summary["shards"]] == ["digits-train.tfrecord-00000-of-00002", "digits-train.tfrecord-00001-of-00002"]
    spec = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
    }
    dataset = tf.data.TFRecordDataset([str(out / s["path"]) for s in summary["shards"]])
    digits = load_digits()
    expected = np.rint(digits.images * 255 / 16).astype(np.uint8)
    for i, record in enumerate(dataset):
        example = tf.io.parse_single_example(record, spec)
        assert int(example["image/class/label"]) == digits.target[i]
        assert np.array_equal(tf.io.decode_png(example["image/encoded"]).numpy()[..., 0], expected[i])
    assert i == 1796


def test_generic_route_with_class_folders_and_names(tmp_path, photos, tf):
    root = tmp_path / "flowers"
    for i in range(9):
        cls = ["daisy", "rose", "tulip"][i % 3]
        (root / cls).mkdir(parents=True, exist_ok=True)
        (root / cls / f"{i}.png").write_bytes(png_bytes(crop(photos, i)))
    out = tmp_path / "run"
    run_prep("dataset=images", f"source.image_dir={root}", "labels=subdirs", "writer.num_shards=2", "writer.shard_size=null", f"hydra.run.dir={out}")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["label_map"] == {"daisy": 0, "rose": 1, "tulip": 2}
    assert [s["num_records"] for s in summary["shards"]] == [5, 4]
    spec = {"image/class/label": tf.io.FixedLenFeature([], tf.int64), "image/class/text": tf.io.FixedLenFeature([], tf.string)}
    pairs = [
        (int(e["image/class/label"]), e["image/class/text"].numpy().decode())
        for e in (tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset([str(out / s["path"]) for s in summary["shards"]]))
    ]
    assert sorted(set(pairs)) == [(0, "daisy"), (1, "rose"), (2, "tulip")]
    assert len(pairs) == 9


def test_jsonl_oneflow_labels_on_the_command_line(tmp_path, photos):
    root = tmp_path / "train_set"
    root.mkdir()
    lines = []
    for i in range(6):
        name = f"{i:08d}_{i % 3}.png"
        (root / name).write_bytes(png_bytes(crop(photos, i)))
        lines.append(json.dumps({name: i % 3}))
    (tmp_path / "label.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    run_prep("dataset=images", f"source.image_dir={root}", "labels=jsonl", f"labels.path={tmp_path / 'label.txt'}", f"hydra.run.dir={out}")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_records"] == 6 and summary["splits"]["train"]["classes"] == {"0": 2, "1": 2, "2": 2}


def test_user_mistakes_are_one_clear_line_without_traceback(tmp_path):
    proc = run_prep("dataset=images", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode == 1
    assert "source.image_dir is not set" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run" / "summary.json").exists()
    assert "source.image_dir is not set" in (tmp_path / "run" / "prep.log").read_text()

    proc = run_prep("dataset=images", f"source.image_dir={tmp_path}", "labels.path=/nonexistent/val.txt", f"hydra.run.dir={tmp_path / 'run2'}", check=False)
    assert proc.returncode == 1 and "labels.path=/nonexistent/val.txt: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = run_prep("writer.shard_sise=10", f"hydra.run.dir={tmp_path / 'run3'}", check=False)
    assert proc.returncode != 0 and "shard_sise" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        # Hydra's own advice for an unknown key is to add it with +: then prep names it.
        (["+encoder.qualty=50"], "error: encoder.qualty: not a setting of encoder (ImageEncoder); did you mean encoder.quality?"),
        (["+writer.colour=red"], "error: writer.colour: not a setting of writer (TFRecordWriter)"),
        (["encoder._target_=os.system"], "error: encoder._target_='os.system': no such class"),
        (["output_dir=/dev/null"], "error: output_dir=/dev/null: cannot write there"),
        (["name=.."], "error: name='..': the dataset name must be a plain word"),
    ],
)
def test_config_mistakes_are_one_line_and_leave_no_output(tmp_path, args, message):
    proc = run_prep(*args, f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and "internal error" not in proc.stderr
    assert not list((tmp_path / "run").glob("*.tfrecord*"))


def test_writing_imports_only_what_it_uses(tmp_path, imagenet_folder):
    """Start-up stays cheap: a pass-through run never imports TensorFlow, OpenCV, pandas, scikit-learn or Ray."""
    proc = run_prep(
        "-X", "importtime", "-m", "prep", "dataset=imagenet_val", f"source.image_dir={imagenet_folder.root}",
        f"labels.path={imagenet_folder.labels}", "limit=10", f"hydra.run.dir={tmp_path / 'run'}", module=None,
    )
    modules = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    imported = {name.split(".")[0] for name in modules}
    assert "prep" in imported and "hydra" in imported
    assert not imported & {"tensorflow", "pandas", "sklearn", "ray", "fsspec"}
    # OpenCV only for report.html's thumbnails, once the shards are written
    converting = {name.split(".")[0] for name in modules[: modules.index("prep.tools.report")]}
    assert "cv2" not in converting



@pytest.mark.slow
def test_inspect_piped_into_head_ends_quietly(tmp_path, commands_on_path):
    import subprocess

    run_prep("limit=1500", "writer.shard_size=500", f"hydra.run.dir={tmp_path / 'run'}")
    command = f"prep-inspect {tmp_path / 'run'} -n 1500 2>err.txt | (sleep 0.5; head -1); echo ${{PIPESTATUS[0]}}"
    proc = subprocess.run(command, shell=True, executable="/bin/bash", cwd=tmp_path, env=commands_on_path, capture_output=True, text=True, timeout=120)
    first, status = proc.stdout.splitlines()
    assert first.startswith("digits: 1500 tfrecord records")
    assert (tmp_path / "err.txt").read_text() == ""  # no "error: [Errno 32] Broken pipe"
    assert status in ("0", "141")  # done, or ended by SIGPIPE as `cat` is; never an error status


@pytest.mark.parametrize("args", [["split=stratified", "--cfg", "job"], ["--cfg", "job", "split=stratified"]])
def test_flags_before_or_after_overrides(args):
    proc = run_prep(*args)
    assert "_target_: prep.split.stratified.StratifiedSplit" in proc.stdout
