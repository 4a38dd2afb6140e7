"""Beyond one machine: shard tasks on Ray, inputs and outputs in S3 (a real S3-compatible server on loopback)."""

from __future__ import annotations

import csv
import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest
from conftest import run_prep

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")  # an optional extra; CI installs it with the dev dependencies
TESTS = str(Path(__file__).resolve().parent)


def shas(summary):
    return [s["sha256"] for s in summary["shards"]]


def imagenet_args(folder, *extra):
    return ("dataset=imagenet_val", f"source.image_dir={folder.root}", f"labels.path={folder.labels}", "writer.shard_size=5", *extra)


def test_ray_output_is_byte_identical_to_local(tmp_path, imagenet_folder):
    run_prep(*imagenet_args(imagenet_folder, f"hydra.run.dir={tmp_path / 'local'}"))
    proc = run_prep(*imagenet_args(imagenet_folder, "executor=ray", "executor.num_cpus=2", f"hydra.run.dir={tmp_path / 'ray'}"))
    local, on_ray = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("local", "ray"))
    assert len(local["shards"]) == 5 and shas(local) == shas(on_ray)
    assert "wrote 24 records" in proc.stderr


def _convert_with(tmp_path, folder, failures, max_retries, monkeypatch):
    from faulty_stages import FlakySource

    from prep.encoders.passthrough import PassthroughEncoder
    from prep.executors.ray import RayExecutor
    from prep.labels.space import SpaceLabels
    from prep.pipeline import convert
    from prep.split import NoSplit
    from prep.writers import TFRecordWriter

    monkeypatch.setenv("PYTHONPATH", TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""))  # for Ray's workers
    counter = tmp_path / "attempts"
    counter.mkdir()
    return convert(
        name="flaky",
        source=FlakySource(str(folder.root), folder.names[7], str(counter), failures),
        labels=SpaceLabels(str(folder.labels)),
        splitter=NoSplit(),
        encoder=PassthroughEncoder(),
        writer=TFRecordWriter(shard_size=5, features={"image": "encoded", "label": "label"}),
        executor=RayExecutor(num_cpus=2, max_retries=max_retries),
        output_dir=str(tmp_path / "out"),
        progress=False,
    ), counter


def test_a_shard_task_that_fails_once_is_retried(tmp_path, imagenet_folder, monkeypatch):
    summary, counter = _convert_with(tmp_path, imagenet_folder, failures=1, max_retries=2, monkeypatch=monkeypatch)
    assert summary["num_records"] == 24
    assert len(os.listdir(counter)) == 1  # it did fail once
    assert (tmp_path / "out" / "summary.json").exists()


def test_a_shard_task_that_always_fails_names_shard_and_cause(tmp_path, imagenet_folder, monkeypatch):
    from prep.core.errors import PrepError

    with pytest.raises(PrepError) as err:
        _convert_with(tmp_path, imagenet_folder, failures=99, max_retries=1, monkeypatch=monkeypatch)
    message = str(err.value)
    assert message.startswith("shard flaky-train.tfrecord-00001-of-00005 failed after 2 attempt(s): OSError: simulated storage outage")
    assert not (tmp_path / "out" / "summary.json").exists()
    assert not list((tmp_path / "out").glob("*.partial"))


@pytest.fixture
def s3(monkeypatch):
    """moto's S3 server on 127.0.0.1, and the environment that points boto, s3fs and Ray's workers at it."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto keeps its buckets in this process, not in the server: start empty whatever an earlier test made.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "FSSPEC_S3_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    import fsspec.config
    import s3fs

    # fsspec reads FSSPEC_* variables once, when first imported: the endpoint of this test's server, not an
    # earlier test's, for what this process opens by URL (prep.load).
    monkeypatch.setitem(fsspec.config.conf, "s3", {**fsspec.config.conf.get("s3", {}), "endpoint_url": endpoint})
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing")
    fs.mkdir("prep-test")
    yield fs
    server.stop()


def test_s3_round_trip_on_ray(tmp_path, imagenet_folder, s3, tf):
    s3.put(str(imagenet_folder.root), "prep-test/in/val_images", recursive=True)
    s3.put_file(str(imagenet_folder.labels), "prep-test/in/val.txt")
    out = "s3://prep-test/out/run1"
    run_prep(
        "dataset=imagenet_val", "source.image_dir=s3://prep-test/in/val_images", "labels.path=s3://prep-test/in/val.txt",
        f"output_dir={out}", "writer.shard_size=10", "executor=ray", "executor.num_cpus=2", f"hydra.run.dir={tmp_path / 'run'}",
    )
    listing = sorted(p.rsplit("/", 1)[1] for p in s3.ls("prep-test/out/run1"))
    assert listing == ["data_0.tfrecord", "data_1.tfrecord", "data_2.tfrecord", "labels.csv", "plan.json", "report.html", "summary.json"]
    summary = json.loads(s3.cat_file("prep-test/out/run1/summary.json"))
    assert summary["num_records"] == 24

    verify = run_prep(out, "--decode", module="prep.verify")
    assert verify.stdout.splitlines()[-1] == "3 of 3 shards ok"

    from prep.load import tf_dataset

    got = [(image.numpy(), int(label)) for image, label in tf_dataset(out, "validation", decode=False)]
    assert [label for _, label in got] == imagenet_folder.label_ids
    assert [image for image, _ in got] == [imagenet_folder.bytes_of(n) for n in imagenet_folder.names]

    # Refusing to overwrite works on object storage too, and resume has nothing to redo.
    again = run_prep("dataset=imagenet_val", "source.image_dir=s3://prep-test/in/val_images", "labels.path=s3://prep-test/in/val.txt",
                     f"output_dir={out}", "writer.shard_size=10", f"hydra.run.dir={tmp_path / 'run2'}", check=False)
    assert again.returncode == 1 and "already holds a finished run" in again.stderr


def test_sweep_jobs_in_parallel_with_the_joblib_launcher(tmp_path):
    sweep = tmp_path / "sweep"
    run_prep("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "writer.shard_size=300,1000", "limit=600", "executor.workers=1", f"hydra.sweep.dir={sweep}")
    rows = list(csv.DictReader((sweep / "sweep_summary.csv").read_text().splitlines()))
    assert [(r["overrides"], r["shards"], r["status"]) for r in rows] == [
        ("writer.shard_size=300", "2", "ok"),
        ("writer.shard_size=1000", "1", "ok"),
    ]
