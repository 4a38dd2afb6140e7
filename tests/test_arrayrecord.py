"""writer=arrayrecord: ArrayRecord files of tf.train.Example, read back by TFDS's as_data_source, Grain and
array_record itself; the same Example bytes as the TFRecord writer; byte-identical reruns; verify and load."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from test_tfds import CLASSES, TFDS_KEYS, flowers, rgb, run, tfds  # noqa: F401  (fixtures)

from prep import load
from prep.core.errors import ConfigError
from prep.formats import arrayrecord, tfrecord
from prep.split import StratifiedSplit
from prep.tools.verify import verify_run
from prep.writers import ArrayRecordWriter, TFRecordWriter


def arrayrecord_run(out, root, **kwargs):
    return run(out, root, writer=ArrayRecordWriter(shard_size=5, features=TFDS_KEYS), splitter=StratifiedSplit(0.25, 0.0, seed=3), **kwargs)


def test_tfds_data_source_reads_the_run(tmp_path, flowers, tfds):
    out = tmp_path / "run"
    summary = arrayrecord_run(out, flowers)
    assert summary["format"] == "arrayrecord"
    assert summary["shards"][0]["path"] == "flowers-train.array_record-00000-of-00004"
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.file_format.value == "array_record"
    assert builder.info.features["label"].names == list(CLASSES)
    sources = builder.as_data_source()
    assert {name: len(source) for name, source in sources.items()} == {"train": 18, "validation": 6}
    train = sources["train"]
    for i in (17, 0, 9, 4):  # random access, any order
        example = train[i]
        name = example["image/filename"].decode()
        np.testing.assert_array_equal(example["image"], rgb(flowers / name))
        assert CLASSES[example["label"]] == name.split("/")[0]
    # the records in order are prep's own reading of the shards
    assert [ex["image/filename"] for ex in train] == [r["image/filename"] for r in load.records(str(out), "train")]


def test_grain_reads_the_shards(tmp_path, flowers):
    import grain.python as grain

    out = tmp_path / "run"
    summary = arrayrecord_run(out, flowers)
    paths = load.shard_paths(str(out), "train", summary)
    source = grain.ArrayRecordDataSource(paths)
    assert len(source) == 18
    expected = list(load.payloads(str(out), "train", summary))
    assert [source[i] for i in (5, 0, 17)] == [expected[5], expected[0], expected[17]]
    dataset = grain.MapDataset.source(source).map(lambda data: tfrecord.decode_example(data)["label"][1][0])
    assert list(dataset) == [load.decode(p, "arrayrecord")["label"] for p in expected]


def test_example_bytes_equal_the_tfrecord_writers(tmp_path, flowers):
    records = {}
    for fmt, writer in (("tfrecord", TFRecordWriter(shard_size=7, features=TFDS_KEYS)), ("arrayrecord", ArrayRecordWriter(shard_size=5, features=TFDS_KEYS))):
        out = tmp_path / fmt
        summary = run(out, flowers, writer=writer)
        records[fmt] = list(load.payloads(str(out), summary=summary))
    assert len(records["arrayrecord"]) == 24 and records["arrayrecord"] == records["tfrecord"]


def test_runs_are_byte_identical(tmp_path, flowers):
    digests = []
    for name in ("a", "b"):
        summary = arrayrecord_run(tmp_path / name, flowers)
        files = sorted([s["path"] for s in summary["shards"]] + [m["path"] for m in summary["metadata_files"]])
        digests.append({f: hashlib.sha256((tmp_path / name / f).read_bytes()).hexdigest() for f in files})
    assert digests[0] == digests[1] and len(digests[0]) == 6 + 3


def test_verify_and_inspect_read_the_run_and_find_damage(tmp_path, flowers):
    out = tmp_path / "run"
    summary = arrayrecord_run(out, flowers, verify=True)
    assert all(ok for ok, _ in verify_run(str(out), decode=True))
    proc = subprocess.run([sys.executable, "-m", "prep.inspect", str(out / summary["shards"][0]["path"]), "-n", "1"],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and "label: " in proc.stdout and "image: png" in proc.stdout
    shard = out / summary["shards"][1]["path"]
    shard.write_bytes(shard.read_bytes()[:-40])
    failed = [line for ok, line in verify_run(str(out)) if not ok]
    assert failed and failed[0].startswith(f"FAIL {summary['shards'][1]['path']}: ")
    shard.write_bytes(b"\0" * 100)
    with pytest.raises(arrayrecord.RecordError, match="not an ArrayRecord file"):
        list(arrayrecord.read_payloads(str(shard)))


def test_abort_leaves_no_file(tmp_path):
    writer = ArrayRecordWriter(shard_size=5, features={"image": "encoded"})
    sink = writer.open(str(tmp_path), "x.array_record")
    sink.write({"encoded": b"123"})
    sink.abort()
    assert os.listdir(tmp_path) == []
    with writer.open(str(tmp_path), "y.array_record") as sink:
        sink.write({"encoded": b"456"})
        size, sha256, extra = sink.commit()
    assert os.listdir(tmp_path) == ["y.array_record"] and size == os.path.getsize(tmp_path / "y.array_record")
    assert list(arrayrecord.read_payloads(str(tmp_path / "y.array_record"))) == [tfrecord.encode_example({"image": ("bytes", [b"456"])})]


def test_missing_array_record_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "array_record.python", None)
    monkeypatch.setitem(sys.modules, "array_record.python.array_record_module", None)
    with pytest.raises(ConfigError, match="pip install 'prep-records\\[arrayrecord\\]'"):
        ArrayRecordWriter(shard_size=5, features={"image": "encoded"})


def test_writing_imports_no_tensorflow(tmp_path, flowers):
    """The CLI run with writer=arrayrecord (and its TFDS metadata) imports neither TensorFlow nor TFDS."""
    code = (
        "import sys, runpy; sys.argv = ['prep', 'dataset=images', 'source.image_dir=%s', 'labels=subdirs', 'writer=arrayrecord', "
        "'features=tfds', 'output_dir=%s', 'progress=false']\n"
        "try:\n    runpy.run_module('prep', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets', 'torch', 'jax')))"
    ) % (flowers, tmp_path / "run")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert {"dataset_info.json", "features.json", "label.labels.txt", "images-train.array_record-00000-of-00001"} <= set(os.listdir(tmp_path / "run"))
