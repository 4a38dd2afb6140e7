"""Worker-count independence, DALI index files, compressed shards read by TensorFlow, and a bench smoke run."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest
from conftest import REPO, run_prep

from prep.formats import tfrecord

pytestmark = pytest.mark.slow


def imagenet_args(folder, out, *extra):
    return ("dataset=imagenet_val", f"source.image_dir={folder.root}", f"labels.path={folder.labels}", "writer.shard_size=7", f"hydra.run.dir={out}", *extra)


def test_output_is_byte_identical_for_one_and_two_workers(tmp_path, imagenet_folder):
    run_prep(*imagenet_args(imagenet_folder, tmp_path / "one", "executor.workers=1"))
    run_prep(*imagenet_args(imagenet_folder, tmp_path / "two", "executor.workers=2"))
    for shard in json.loads((tmp_path / "one" / "summary.json").read_text())["shards"]:
        assert (tmp_path / "one" / shard["path"]).read_bytes() == (tmp_path / "two" / shard["path"]).read_bytes()


def test_dali_index_lines_match_record_offsets(tmp_path, imagenet_folder):
    out = tmp_path / "run"
    run_prep(*imagenet_args(imagenet_folder, out, "writer.dali_index=true"))
    summary = json.loads((out / "summary.json").read_text())
    for shard in summary["shards"]:
        data = (out / shard["path"]).read_bytes()
        lines = (out / (shard["path"] + ".idx")).read_text().splitlines()
        assert len(lines) == shard["num_records"] > 0
        position = 0
        for line in lines:
            offset, size = map(int, line.split())
            assert offset == position
            length = int.from_bytes(data[offset : offset + 8], "little")
            assert size == 8 + 4 + length + 4
            position += size
        assert position == len(data)
    assert run_prep(str(out), module="prep.verify").returncode == 0


@pytest.mark.parametrize("compression", ["gzip", "zlib"])
def test_compressed_shards_are_read_by_tensorflow(tmp_path, imagenet_folder, tf, compression):
    out = tmp_path / "run"
    run_prep(*imagenet_args(imagenet_folder, out, f"writer.compression={compression}"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["compression"] == compression
    dataset = tf.data.TFRecordDataset([str(out / s["path"]) for s in summary["shards"]], compression_type=compression.upper())
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
    got = [tf.io.parse_single_example(r, spec) for r in dataset]
    assert [int(g["label"]) for g in got] == imagenet_folder.label_ids
    assert [g["image"].numpy() for g in got] == [imagenet_folder.bytes_of(n) for n in imagenet_folder.names]
    assert run_prep(str(out), "--decode", module="prep.verify").returncode == 0


def test_compressed_gzip_shards_are_deterministic(tmp_path, imagenet_folder):
    run_prep(*imagenet_args(imagenet_folder, tmp_path / "a", "writer.compression=gzip"))
    run_prep(*imagenet_args(imagenet_folder, tmp_path / "b", "writer.compression=gzip"))
    a, b = (json.loads((tmp_path / d / "summary.json").read_text())["shards"] for d in ("a", "b"))
    assert [s["sha256"] for s in a] == [s["sha256"] for s in b]
    with gzip.open(tmp_path / "a" / a[0]["path"]) as f:
        assert len(list(tfrecord.read_records(f))) == 7


def test_dali_index_with_compression_is_refused(tmp_path, imagenet_folder):
    proc = run_prep(*imagenet_args(imagenet_folder, tmp_path / "run", "writer.compression=gzip", "writer.dali_index=true"), check=False)
    assert proc.returncode == 1 and "writer.dali_index=true needs uncompressed shards" in proc.stderr


def test_bench_smoke_run(tmp_path):
    out = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench.py"), "--images", "40", "--small", "20", "--repeat", "1", "--data", str(tmp_path / "data"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    text = out.read_text()
    for row in ("copy floor", "prep dataset=imagenet_val (pass-through)", "seed 002 method", "prep re-encode to JPEG", "seed 000 method"):
        assert row in text
    assert "| pass-through >= 3x faster than seed 002's TensorFlow method |" in text
