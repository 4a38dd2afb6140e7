"""Splits the data already has: split=folders (DIR/<split>/<class>/...) and split=column; one class map for all."""

from __future__ import annotations

import json

import pytest
from conftest import crop, jpeg_bytes, run_prep
from split_helpers import class_folders, run, split_of_files, write

from prep.core.errors import ConfigError, InputError
from prep.labels.csv import CsvLabels
from prep.labels.jsonl import JsonlLabels
from prep.labels.subdirs import SubdirLabels
from prep.split import ColumnSplit, FolderSplit


@pytest.fixture
def presplit(tmp_path, photos):
    """train/ with cat, dog, owl; val/ without dog (the classic failure: a class folder missing from one split)."""
    root = tmp_path / "images"
    class_folders(root / "train", photos, classes=("cat", "dog", "owl"), per_class=6)
    class_folders(root / "val", photos, classes=("cat", "owl"), per_class=3, start=100)
    return root


def test_a_class_missing_from_validation_keeps_every_id_and_is_named(tmp_path, presplit, tf):
    summary = run(tmp_path / "out", presplit, FolderSplit())
    assert summary["label_map"] == {"cat": 0, "dog": 1, "owl": 2}  # owl is 2 in both splits, not 1 in validation
    assert summary["splits"]["validation"]["classes"] == {"0": 3, "2": 3}
    assert any("validation has no image of 1 class(es)" in n and "'dog'" in n for n in summary["split_notes"])
    # read back by TensorFlow: every validation owl is stored with id 2
    for shard in (s for s in summary["shards"] if s["split"] == "validation"):
        for raw in tf.data.TFRecordDataset(str(tmp_path / "out" / shard["path"])):
            example = tf.train.Example.FromString(raw.numpy())
            name = example.features.feature["image/filename"].bytes_list.value[0].decode()
            label = example.features.feature["image/class/label"].int64_list.value[0]
            assert label == {"cat": 0, "owl": 2}[name.split("/")[1]]
    assert set(split_of_files(tmp_path / "out").values()) == {"train", "validation"}


def test_strict_makes_a_missing_class_an_error(tmp_path, presplit):
    with pytest.raises(InputError, match="validation has no image of 1 class.*'dog'.*split.strict=true"):
        run(tmp_path / "out", presplit, FolderSplit(strict=True))
    assert not (tmp_path / "out").exists()


def test_folder_names_accepted_and_an_unknown_split_folder_refused(tmp_path, photos):
    root = tmp_path / "images"
    for folder in ("Train", "valid", "test"):
        class_folders(root / folder, photos, classes=("a", "b"), per_class=2)
    summary = run(tmp_path / "ok", root, FolderSplit())
    assert {s: v["num_records"] for s, v in summary["splits"].items()} == {"train": 4, "validation": 4, "test": 4}
    class_folders(root / "extra", photos, classes=("a",), per_class=1)
    with pytest.raises(InputError, match=r"extra/a/000.jpg: split=folders expects DIR/<split>/<class>/<image>.*'extra'"):
        run(tmp_path / "bad", root, FolderSplit())


def test_images_directly_in_a_split_folder_are_refused(tmp_path, photos):
    root = tmp_path / "images"
    class_folders(root / "train", photos, classes=("a",), per_class=2)
    write(root, "train/loose.jpg", jpeg_bytes(crop(photos, 9)))
    with pytest.raises(InputError, match=r"train/loose.jpg: labels=subdirs needs every image inside a class folder.*directly in train/"):
        run(tmp_path / "out", root, FolderSplit())


def test_split_column_of_a_csv(tmp_path, photos):
    root = tmp_path / "images"
    rows = ["filename,label,split"]
    for i in range(24):
        write(root, f"{i:03d}.jpg", jpeg_bytes(crop(photos, i)))
        rows.append(f"{i:03d}.jpg,{('cat', 'dog')[i % 2]},{('train', 'train', 'VAL', 'test')[i % 4]}")
    (tmp_path / "labels.csv").write_text("\r\n".join(rows) + "\r\n")
    summary = run(tmp_path / "out", root, ColumnSplit(), labels=CsvLabels(str(tmp_path / "labels.csv")))
    where = split_of_files(tmp_path / "out")
    assert {s: v["num_records"] for s, v in summary["splits"].items()} == {"train": 12, "validation": 6, "test": 6}
    assert where["002.jpg"] == "validation" and where["003.jpg"] == "test" and where["000.jpg"] == "train"
    rows[5] = "004.jpg,cat,trian"
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"labels.csv:6: split 'trian' in column 'split' is not one of train, validation"):
        run(tmp_path / "out2", root, ColumnSplit(), labels=CsvLabels(str(tmp_path / "labels.csv")))


def test_split_field_of_a_jsonl_file(tmp_path, photos):
    root = tmp_path / "images"
    lines = []
    for i in range(8):
        write(root, f"{i}.jpg", jpeg_bytes(crop(photos, i)))
        lines.append(json.dumps({"file_name": f"{i}.jpg", "label": i % 2, "fold": "test" if i < 2 else "train"}))
    (tmp_path / "labels.jsonl").write_text("\n".join(lines) + "\n")
    summary = run(tmp_path / "out", root, ColumnSplit("fold"), labels=JsonlLabels(str(tmp_path / "labels.jsonl")))
    assert {s: v["num_records"] for s, v in summary["splits"].items()} == {"train": 6, "test": 2}
    (tmp_path / "labels.jsonl").write_text(json.dumps({"file_name": "0.jpg", "label": 0}) + "\n")
    with pytest.raises(InputError, match=r'labels.jsonl:1: no "fold" field'):
        run(tmp_path / "out2", root, ColumnSplit("fold"), labels=JsonlLabels(str(tmp_path / "labels.jsonl")))


def test_column_split_needs_a_label_file_with_columns():
    with pytest.raises(ConfigError, match="labels=csv or labels=jsonl"):
        ColumnSplit().prepare(SubdirLabels())


def test_folders_on_the_command_line(tmp_path, presplit):
    proc = run_prep(
        "dataset=images", f"source.image_dir={presplit}", "labels=subdirs", "split=folders", "progress=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert "validation has no image of 1 class(es) the other splits have: 'dog'" in proc.stderr
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["label_map"] == {"cat": 0, "dog": 1, "owl": 2}
    proc = run_prep(
        "dataset=images", f"source.image_dir={presplit}", "labels=subdirs", "split=folders", "split.strict=true",
        f"hydra.run.dir={tmp_path / 'strict'}", check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "split.strict=true" in proc.stderr


def test_an_image_listed_twice_with_two_splits_is_an_error(tmp_path, photos):
    root = tmp_path / "images"
    write(root, "a.jpg", jpeg_bytes(crop(photos, 0)))
    write(root, "b.jpg", jpeg_bytes(crop(photos, 1)))
    (tmp_path / "labels.csv").write_text("filename,label,split\na.jpg,x,train\nb.jpg,y,train\na.jpg,x,test\n")
    with pytest.raises(InputError, match=r"labels.csv:4: a.jpg is listed again with another 'split' \(split.column\): 'test', first at .*labels.csv:2"):
        run(tmp_path / "out", root, ColumnSplit(), labels=CsvLabels(str(tmp_path / "labels.csv")))
