"""What prep may write, read and delete: only its own files, inside output_dir and image_dir; resume never mixes runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, crop, jpeg_bytes, run_prep
from prep import outputs
from prep.encoders import ImageEncoder, PassthroughEncoder
from prep.errors import ConfigError, EncodeError, PrepError, WriteError
from prep.executors import LocalExecutor
from prep.labels import EmbeddedLabels, SpaceLabels, SubdirLabels
from prep.pipeline import convert
from prep.sources import DigitsSource, ImageDirSource
from prep.split import NoSplit
from prep.writers import TFRecordWriter

SLIM = {"image/encoded": "encoded", "image/class/label": "label", "image/class/text": "text", "image/filename": "filename"}


def run(out, source=None, labels=None, *, name="test", split="train", pattern=None, shard_size=10, **kwargs):
    writer_args = {"pattern": pattern} if pattern else {}
    return convert(
        name=name,
        source=source or DigitsSource(),
        labels=labels or EmbeddedLabels(),
        splitter=NoSplit(split),
        encoder=PassthroughEncoder() if source is not None else ImageEncoder("png"),
        writer=TFRecordWriter(shard_size=shard_size, features=SLIM, **writer_args),
        executor=LocalExecutor(1),
        output_dir=str(out),
        progress=False,
        **kwargs,
    )


def tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def photo_folder(tmp_path, photos):
    root = tmp_path / "images"
    root.mkdir()
    lines = []
    for i in range(12):
        (root / f"{i:02d}.jpg").write_bytes(jpeg_bytes(crop(photos, i, size=48)))
        lines.append(f"{i:02d}.jpg {['cat', 'dog'][i % 2]}")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(lines) + "\n")
    return root, labels


# ------------------------------------------------------------------ shard paths stay inside output_dir


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "..", "pattern": "{dataset}/part-{index}"}, "name='..'"),
        ({"split": "..", "pattern": "{split}/part-{index}"}, "must stay inside the output directory"),
        ({"name": "x", "pattern": ".prep-manifest/{dataset}-{index}"}, "where prep keeps its own records"),
        ({"name": "x", "pattern": "summary.json/{index}"}, "where prep keeps its own records"),
        ({"name": "x", "pattern": "{dataset}-{index}.partial"}, "prep's temporary and index files"),
    ],
)
def test_shards_never_land_outside_output_dir_or_in_prep_records(tmp_path, kwargs, message):
    out = tmp_path / "deep" / "out"
    with pytest.raises(ConfigError) as err:
        run(out, limit=20, **kwargs)
    assert message in str(err.value)
    assert not (tmp_path / "deep").exists() or not any((tmp_path / "deep").rglob("*"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(st.sampled_from("ab./\\.-_:{}\0é"), min_size=0, max_size=6),
    split=st.text(st.sampled_from("tr./.-{}"), min_size=0, max_size=5),
    pattern=st.sampled_from(["{dataset}/{split}/part-{index}", "{split}-{dataset}-{index:03d}", "{dataset}{split}{index}"]),
)
def test_any_name_split_and_pattern_writes_inside_output_dir_or_is_refused(tmp_path_factory, name, split, pattern):
    base = tmp_path_factory.mktemp("p")
    out = base / "a" / "out"
    try:
        summary = run(out, name=name, split=split, pattern=pattern, limit=12, shard_size=6)
    except PrepError:
        assert not any(base.rglob("*.tfrecord*")) and not any(p.is_file() and "part" in p.name for p in base.rglob("*"))
        return
    written = {p for p in base.rglob("*") if p.is_file()}
    assert all(out in p.parents for p in written), written
    assert {str(out / s["path"]) for s in summary["shards"]} <= {str(p) for p in written}


# ------------------------------------------------------------------ overwrite deletes only prep's own files


def test_overwrite_keeps_files_prep_did_not_write(tmp_path):
    out = tmp_path / "out"
    run(out, limit=30)
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    (out / "sub" / "draft.partial").write_text("mine too")
    before = tree(out)
    with pytest.raises(ConfigError, match=r"is not empty \(notes.txt, sub/draft.partial\): files no prep run recorded"):
        run(out, limit=40, overwrite=True)
    assert tree(out) == before
    (out / "notes.txt").unlink()
    (out / "sub" / "draft.partial").unlink()
    summary = run(out, limit=40, overwrite=True)
    assert summary["num_records"] == 40 and (out / "sub").is_dir()  # the user's folder stays


def test_a_users_own_summary_and_labels_are_not_a_prep_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"my": "notes"}')
    (out / "labels.csv").write_text("a,b\n")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match=r"is not empty \(labels.csv, summary.json\)"):
            run(out, limit=10, overwrite=overwrite)
    assert (out / "summary.json").read_text() == '{"my": "notes"}' and (out / "labels.csv").read_text() == "a,b\n"


def test_overwrite_replaces_every_file_of_the_earlier_run(tmp_path):
    out = tmp_path / "out"
    old = run(out, limit=40, shard_size=10, pattern="{split}/old-{index}")
    summary = run(out, limit=20, shard_size=10, pattern="{split}/new-{index}", overwrite=True)
    assert sorted(tree(out)) == sorted(["labels.csv", "summary.json", *(s["path"] for s in summary["shards"])] + [".prep-lock"])
    assert len(old["shards"]) == 4 and len(summary["shards"]) == 2


@pytest.mark.parametrize("where", ["same", "parent", "labels"])
def test_output_dir_may_not_be_or_contain_an_input(tmp_path, photo_folder, where):
    root, labels = photo_folder
    out = {"same": root, "parent": tmp_path, "labels": labels.parent}[where]
    before = tree(tmp_path)
    with pytest.raises(ConfigError, match="is or contains the run's input"):
        run(out, ImageDirSource(str(root)), SpaceLabels(str(labels)), overwrite=True)
    assert tree(tmp_path) == before


# ------------------------------------------------------------------ one run at a time


def test_a_second_run_into_a_locked_folder_is_refused_and_changes_nothing(tmp_path):
    out = tmp_path / "run"
    run_prep("limit=30", f"hydra.run.dir={out}")
    before = tree(out)
    with outputs.RunLock(str(out)):  # as if a run were in progress
        proc = run_prep("limit=30", "overwrite=true", f"hydra.run.dir={out}", check=False)
    assert proc.returncode == 1 and "is in use by another prep run" in proc.stderr and "Traceback" not in proc.stderr
    assert tree(out) == before  # .hydra/, prep.log, shards and summary untouched


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "prep", "limit=20", "progress=false"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    runs = sorted(p.parent for p in (tmp_path / "outputs").rglob("summary.json"))
    assert len(runs) == 2 and all((r / ".hydra" / "config.yaml").exists() for r in runs)


def test_refused_rerun_keeps_the_saved_config_for_the_exact_rerun(tmp_path):
    out = tmp_path / "run"
    run_prep("limit=25", f"hydra.run.dir={out}")
    saved = (out / ".hydra" / "config.yaml").read_text()
    proc = run_prep("limit=99", f"hydra.run.dir={out}", check=False)
    assert proc.returncode == 1 and (out / ".hydra" / "config.yaml").read_text() == saved
    rerun = tmp_path / "rerun"
    run_prep("--config-path", str(out / ".hydra"), "--config-name", "config", f"hydra.run.dir={rerun}")
    first, again = (json.loads((d / "summary.json").read_text()) for d in (out, rerun))
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in first["shards"]] and again["num_records"] == 25
    assert not (rerun / "prep_main.log").exists() and (rerun / "prep.log").exists()


# ------------------------------------------------------------------ resume never mixes runs


def _interrupted(out, source, labels, fail_at: int, **kwargs):
    """A run whose shard task for shard `fail_at` dies, as a killed run leaves the folder."""
    from prep import pipeline

    real = pipeline.write_shard

    def dying(job, plan):
        if plan.index == fail_at:
            raise KeyboardInterrupt
        return real(job, plan)

    pipeline.write_shard = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            run(out, source, labels, shard_size=4, **kwargs)
    finally:
        pipeline.write_shard = real


def test_resume_after_labels_change_rewrites_everything_affected(tmp_path, photo_folder):
    root, labels = photo_folder
    out = tmp_path / "out"
    _interrupted(out, ImageDirSource(str(root)), SpaceLabels(str(labels)), fail_at=2, pattern="{split}-{index}-of-{count}")
    assert sorted(p.name for p in out.glob("train-*")) == ["train-0-of-3", "train-1-of-3"]
    # The user renames a class and adds images: ids, texts and the shard count all change.
    lines = labels.read_text().replace("dog", "puppy").splitlines()
    for i in range(12, 15):
        (root / f"{i:02d}.jpg").write_bytes((root / "00.jpg").read_bytes()[:-2] + b"\xff\xd9")
        lines.append(f"{i:02d}.jpg cat")
    labels.write_text("\n".join(lines) + "\n")
    summary = run(out, ImageDirSource(str(root)), SpaceLabels(str(labels)), shard_size=4, pattern="{split}-{index}-of-{count}", resume=True)
    clean = run(tmp_path / "clean", ImageDirSource(str(root)), SpaceLabels(str(labels)), shard_size=4, pattern="{split}-{index}-of-{count}")
    assert [s["sha256"] for s in summary["shards"]] == [s["sha256"] for s in clean["shards"]]
    assert sorted(p.name for p in out.glob("train-*")) == [f"train-{i}-of-4" for i in range(4)]  # no -of-3 left


def test_resume_rewrites_a_shard_whose_image_changed(tmp_path, photo_folder, photos):
    root, labels = photo_folder
    out = tmp_path / "out"
    _interrupted(out, ImageDirSource(str(root)), SpaceLabels(str(labels)), fail_at=2)
    (root / "01.jpg").write_bytes(jpeg_bytes(crop(photos, 40, size=48)))  # same name and label, other picture
    summary = run(out, ImageDirSource(str(root)), SpaceLabels(str(labels)), shard_size=4, resume=True)
    clean = run(tmp_path / "clean", ImageDirSource(str(root)), SpaceLabels(str(labels)), shard_size=4)
    assert [s["sha256"] for s in summary["shards"]] == [s["sha256"] for s in clean["shards"]]


def test_a_published_shard_is_always_in_the_manifest(tmp_path, photo_folder, monkeypatch):
    """The shard task records its shard before the rename: a driver killed in between loses nothing."""
    root, labels = photo_folder
    out = tmp_path / "out"
    _interrupted(out, ImageDirSource(str(root)), SpaceLabels(str(labels)), fail_at=2)
    recorded = outputs.Manifest(str(out), "").entries()
    assert sorted(recorded) == sorted(p.name for p in out.glob("test-train.tfrecord-*"))


def test_manifest_write_failure_is_one_clear_error_and_no_shard(tmp_path, monkeypatch):
    from prep import storage

    real = storage.write_bytes

    def full(path, data):
        if ".prep-manifest" in path and not path.endswith("run.json"):
            raise OSError(28, "No space left on device", path)
        return real(path, data)

    monkeypatch.setattr(storage, "write_bytes", full)
    out = tmp_path / "out"
    with pytest.raises(WriteError, match="No space left on device"):
        run(out, limit=20)
    assert not list(out.glob("test-train*"))


# ------------------------------------------------------------------ reading stays inside image_dir


def test_an_image_swapped_for_a_symlink_during_the_run_is_not_read(tmp_path, photo_folder):
    root, labels = photo_folder
    secret = tmp_path / "secret.jpg"
    secret.write_bytes((root / "03.jpg").read_bytes())
    source = ImageDirSource(str(root))
    ref = source.resolve("03.jpg")  # planned while it was a real file
    (root / "03.jpg").unlink()
    (root / "03.jpg").symlink_to(secret)
    with pytest.raises(EncodeError, match="symlink points outside source.image_dir"):
        source.read(ref)
    (root / "03.jpg").unlink()
    os.mkfifo(root / "03.jpg")  # a FIFO must not hang the run
    started = time.monotonic()
    with pytest.raises(EncodeError, match="not a regular file"):
        source.read(ref)
    assert time.monotonic() - started < 1


def test_an_intermediate_folder_swapped_for_a_symlink_is_not_read(tmp_path, photo_folder):
    root, _ = photo_folder
    (root / "sub").mkdir()
    (root / "sub" / "x.jpg").write_bytes((root / "00.jpg").read_bytes())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.jpg").write_bytes(b"\xff\xd8\xff not yours")
    source = ImageDirSource(str(root))
    ref = source.resolve("sub/x.jpg")
    (root / "sub" / "x.jpg").unlink()
    (root / "sub").rmdir()
    (root / "sub").symlink_to(outside)
    with pytest.raises(EncodeError, match="outside source.image_dir"):
        source.read(ref)


def test_symlink_loops_and_aliased_class_folders(tmp_path, photos):
    root = tmp_path / "images"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    for i in range(3):
        (root / "cat" / f"{i}.jpg").write_bytes(jpeg_bytes(crop(photos, i, size=40)))
        (root / "dog" / f"{i}.jpg").write_bytes(jpeg_bytes(crop(photos, i + 10, size=40)))
    (root / "cat" / "loop").symlink_to(root / "cat")  # a folder inside itself
    (root / "kitten").symlink_to(root / "cat")  # a class folder that is another class folder
    (root / "self.jpg").symlink_to(root / "self.jpg")  # a file loop
    out = tmp_path / "out"
    summary = convert(
        name="t", source=ImageDirSource(str(root)), labels=SubdirLabels(), splitter=NoSplit("train"), encoder=PassthroughEncoder(),
        writer=TFRecordWriter(shard_size=100, features=SLIM), executor=LocalExecutor(1), output_dir=str(out), progress=False,
    )
    assert summary["num_records"] == 6 and summary["label_map"] == {"cat": 0, "dog": 1}


def test_max_image_bytes_skips_before_reading(tmp_path, photo_folder):
    root, labels = photo_folder
    big = len((root / "05.jpg").read_bytes())
    summary = run(tmp_path / "out", ImageDirSource(str(root), max_image_bytes=big - 1), SpaceLabels(str(labels)))
    reasons = {s["source"]: s["reason"] for s in summary["skipped"]}
    assert reasons["05.jpg"] == f"{big:,} bytes is over max_image_bytes={big - 1:,}"


def test_names_match_across_unicode_normalization(tmp_path, photos):
    root = tmp_path / "images"
    root.mkdir()
    nfc = "caf\u00e9.jpg"
    (root / unicodedata.normalize("NFD", nfc)).write_bytes(jpeg_bytes(crop(photos, 1, size=40)))
    labels = tmp_path / "labels.txt"
    labels.write_text(f"{nfc} 1\n", encoding="utf-8")
    summary = run(tmp_path / "out", ImageDirSource(str(root)), SpaceLabels(str(labels)))
    assert summary["num_records"] == 1 and not summary["skipped"]


# ------------------------------------------------------------------ Ctrl-C and SIGTERM stop everything at once


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_every_worker_within_seconds_and_leaves_only_recorded_shards(tmp_path, photos, signame):
    import signal

    root = tmp_path / "photos"
    root.mkdir()
    lines = []
    for i in range(60):
        (root / f"{i:03d}.jpg").write_bytes(jpeg_bytes(photos[i % 2][(i % 7) : 420, (i % 5) : 630], quality=95))
        lines.append(f"{i:03d}.jpg {i % 3}")
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = ["dataset=images", f"source.image_dir={root}", f"labels.path={tmp_path / 'val.txt'}", "encoder=png", "encoder.png_compression=9",
            "writer.shard_size=2", "executor.workers=2", f"hydra.run.dir={out}"]
    proc = subprocess.Popen([sys.executable, "-m", "prep", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(list(out.glob("images-train.tfrecord-*-of-*[0-9]"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None

    def published():
        return {p.name for p in out.glob("images-train.tfrecord-*") if not p.name.endswith(".partial")}

    proc.send_signal(getattr(signal, signame))
    sent = time.monotonic()
    at_signal = published()
    proc.communicate(timeout=60)
    assert time.monotonic() - sent < 5
    time.sleep(1.0)  # a worker that kept going would publish more shards now
    shards = sorted(published())
    # No shard task starts after the signal: at most a shard already being renamed at that instant appears.
    assert len(set(shards) - at_signal) <= 1, (sorted(at_signal), shards)
    assert shards and not list(out.glob("*.partial"))
    recorded = outputs.Manifest(str(out), "").entries()
    assert sorted(recorded) == shards  # every shard under a final name is recorded
    assert len(shards) < 30
