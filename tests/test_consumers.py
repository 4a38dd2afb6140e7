"""prep.load.dali_tfrecord_args and ray_tfrecord_args with the real consumers: NVIDIA DALI on the CPU
(fn.readers.tfrecord + fn.decoders.image) and Ray Data's read_tfrecords read a prep TFRecord run."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from reader_runs import SLIM, make_folder, make_run

from prep import load
from prep.core.errors import ConfigError
from prep.runfiles import summary as summaries
from prep.writers import TFRecordWriter


@pytest.fixture(scope="module")
def dali_runs(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("dali")
    pixels = make_folder(root / "images", photos, count=20)
    indexed = make_run(root / "indexed", root / "images", TFRecordWriter(shard_size=4, features=SLIM, dali_index=True))
    plain = make_run(root / "plain", root / "images", TFRecordWriter(shard_size=4, features=SLIM))
    return root, pixels, indexed, plain


def read_with_dali(args: dict, count: int) -> list[tuple[np.ndarray, int, str]]:
    """Every record of one epoch through a CPU-only DALI pipeline: (RGB pixels, label, filename)."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=count, num_threads=1, device_id=None)
    def pipeline():
        inputs = fn.readers.tfrecord(**args, random_shuffle=False, name="reader")
        images = fn.decoders.image(inputs["image/encoded"], device="cpu", output_type=types.RGB)
        return images, inputs["image/class/label"], inputs["image/filename"]

    pipe = pipeline()
    pipe.build()
    assert pipe.epoch_size("reader") == count
    images, labels, names = pipe.run()
    return [
        (np.array(images.at(i)), int(np.array(labels.at(i))), np.array(names.at(i)).tobytes().decode())
        for i in range(count)
    ]


def test_dali_reads_a_run_with_its_index_files(dali_runs):
    _, pixels, indexed, _ = dali_runs
    summary = summaries.load(indexed)
    args = load.dali_tfrecord_args(indexed, "train")
    assert args["index_path"] == [p + ".idx" for p in args["path"]]
    count = summary["splits"]["train"]["num_records"]
    got = read_with_dali(args, count)
    sequential = list(load.records(indexed, "train"))
    assert [(label, name) for _, label, name in got] == [(r["image/class/label"], r["image/filename"].decode()) for r in sequential]
    for image, _, name in got:
        source = pixels[name]
        # DALI decodes to RGB: gray is repeated into three channels, alpha dropped
        want = np.repeat(source, 3, axis=2) if source.shape[2] == 1 else source[:, :, :3]
        assert np.array_equal(image, want), name


def test_dali_reads_a_run_without_index_files_through_index_dir(dali_runs, tmp_path):
    _, pixels, indexed, plain = dali_runs
    with pytest.raises(ConfigError, match="pass index_dir=.*writer.dali_index=true"):
        load.dali_tfrecord_args(plain, "test")
    with pytest.raises(ConfigError, match="inside the run folder"):
        load.dali_tfrecord_args(plain, "test", index_dir=f"{plain}/indexes")
    args = load.dali_tfrecord_args(plain, None, index_dir=str(tmp_path / "idx"))
    assert all(p.startswith(str(tmp_path / "idx")) for p in args["index_path"])
    # the index files written equal the ones writer.dali_index=true writes (the runs hold the same bytes)
    assert [open(p).read() for p in args["index_path"]] == [open(p).read() for p in load.dali_tfrecord_args(indexed)["index_path"]]
    got = read_with_dali(args, len(pixels))
    assert sorted(name for _, _, name in got) == sorted(pixels)
    for image, label, name in got:
        source = pixels[name]
        want = np.repeat(source, 3, axis=2) if source.shape[2] == 1 else source[:, :, :3]
        assert np.array_equal(image, want), name
        assert label == ["daisy", "rose", "tulip"].index(name.split("/")[0])


def test_dali_features_have_the_stored_types_and_compressed_runs_are_refused(dali_runs, tmp_path, photos):
    from nvidia.dali import tfrecord as tfrec

    _, _, indexed, _ = dali_runs
    args = load.dali_tfrecord_args(indexed, "validation")
    assert sorted(args["features"]) == sorted(SLIM)
    assert len(args["path"]) == summaries.load(indexed)["splits"]["validation"]["num_shards"]
    assert all(isinstance(f, tfrec.Feature) for f in args["features"].values())
    make_folder(tmp_path / "images", photos, count=6)
    gz = make_run(tmp_path / "gz", tmp_path / "images", TFRecordWriter(shard_size=4, features=SLIM, compression="zlib"))
    with pytest.raises(ConfigError, match="zlib-compressed; DALI's tfrecord reader reads uncompressed"):
        load.dali_tfrecord_args(gz, "train", index_dir=str(tmp_path / "idx"))
    with pytest.raises(ConfigError, match="zlib-compressed.*gzip or null"):
        load.ray_tfrecord_args(gz, "train")
    with pytest.raises(ConfigError, match="no split 'val'"):
        load.dali_tfrecord_args(indexed, "val")


def test_ray_args_list_exactly_the_shards_and_a_typed_schema(dali_runs):
    _, _, indexed, _ = dali_runs
    summary = summaries.load(indexed)
    args = load.ray_tfrecord_args(indexed, "train")
    assert args["paths"] == [f"{indexed}/{s['path']}" for s in summary["shards"] if s["split"] == "train"]
    assert {f.name: f.type for f in args["tf_schema"].feature} == {
        key: {"bytes": 1, "int64": 2, "float": 3}[kind] for key, kind in summary["features"].items()
    }  # schema_pb2.FeatureType BYTES=1, INT=2, FLOAT=3
    assert "tf_schema" not in load.ray_tfrecord_args(indexed, "train", schema=False)


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("compression", [None, "gzip"])
def test_ray_data_reads_each_split(ray_session, tmp_path, photos, compression):
    ray = ray_session
    make_folder(tmp_path / "images", photos, count=20)
    run = make_run(tmp_path / "run", tmp_path / "images", TFRecordWriter(shard_size=4, features=SLIM, compression=compression, dali_index=not compression))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    if compression is None:
        with pytest.raises(Exception, match="labels.csv|summary.json|dataset_info.json|features.json|\\.idx"):
            ray.data.read_tfrecords(run).count()  # why the helper lists the shards
    for split, expected in summary["splits"].items():
        rows = ray.data.read_tfrecords(**load.ray_tfrecord_args(run, split)).take_all()
        assert len(rows) == expected["num_records"]
        labels = Counter(str(row["image/class/label"][0]) for row in rows)  # with tf_schema, one-element lists
        assert labels == Counter(expected["classes"])
        names = sorted(row["image/filename"][0].decode() for row in rows)
        assert names == sorted(r["image/filename"].decode() for r in load.records(run, split))
    rows = ray.data.read_tfrecords(**load.ray_tfrecord_args(run, "train", schema=False)).take_all()
    assert sorted(row["image/class/label"] for row in rows) == sorted(r["image/class/label"] for r in load.records(run, "train"))
