"""What prep may write, read and delete: only its own files, inside output_dir and image_dir; resume never mixes runs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import unicodedata

import pytest
from conftest import REPO, crop, jpeg_bytes, run_prep
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prep.core.errors import ConfigError, EncodeError, PrepError, WriteError
from prep.encoders.image import ImageEncoder
from prep.encoders.passthrough import PassthroughEncoder
from prep.executors.local import LocalExecutor
from prep.labels.embedded import EmbeddedLabels
from prep.labels.space import SpaceLabels
from prep.labels.subdirs import SubdirLabels
from prep.pipeline import convert
from prep.run import outputs
from prep.sources.digits import DigitsSource
from prep.sources.image_dir import ImageDirSource
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
    assert sorted(tree(out)) == sorted(["labels.csv", "plan.json", "report.html", "summary.json", *(s["path"] for s in summary["shards"])] + [".prep-lock"])
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


@contextlib.contextmanager
def shard_task_dies(index: int):
    """The shard task for shard `index` is interrupted, as a killed run leaves the folder."""
    from prep.run import shards

    real = shards.write_shard

    def dying(job, plan):
        if plan.index == index:
            raise KeyboardInterrupt
        return real(job, plan)

    shards.write_shard = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        shards.write_shard = real


@contextlib.contextmanager
def deleting_dies_after(monkeypatch, count: int):
    """storage.remove is interrupted after `count` deletions; yields the paths it did delete."""
    from prep.core import storage

    real, removed = storage.remove, []

    def dies_midway(path, **kwargs):
        if len(removed) == count:
            raise KeyboardInterrupt
        removed.append(path)
        real(path, **kwargs)

    monkeypatch.setattr(storage, "remove", dies_midway)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield removed
    finally:
        monkeypatch.setattr(storage, "remove", real)


def _interrupted(out, source, labels, fail_at: int, **kwargs):
    """A run whose shard task for shard `fail_at` dies."""
    with shard_task_dies(fail_at):
        run(out, source, labels, shard_size=4, **kwargs)


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
    from prep.core import storage

    real = storage.write_bytes

    def full(path, data, **kwargs):
        if ".prep-manifest" in path and not path.endswith("run.json"):
            raise OSError(28, "No space left on device", path)
        return real(path, data, **kwargs)

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


# ------------------------------------------------------------------ found by the hostile pass (each a class)


def _subdirs(out, root, **kwargs):
    return convert(
        name="t", source=ImageDirSource(str(root)), labels=SubdirLabels(), splitter=NoSplit("train"), encoder=PassthroughEncoder(),
        writer=TFRecordWriter(shard_size=100, features=SLIM), executor=LocalExecutor(1), output_dir=str(out), progress=False, **kwargs,
    )


def test_every_entry_subdirs_leaves_out_is_named_with_its_reason(tmp_path, photos):
    root, outside = tmp_path / "images", tmp_path / "elsewhere"
    (root / "cat").mkdir(parents=True)
    (outside / "dog").mkdir(parents=True)
    for i in range(2):
        (root / "cat" / f"{i}.jpg").write_bytes(jpeg_bytes(crop(photos, i, size=40)))
        (outside / "dog" / f"{i}.jpg").write_bytes(jpeg_bytes(crop(photos, i + 5, size=40)))
    (root / "dog").symlink_to(outside / "dog")  # a class folder outside image_dir: never read, but named
    (root / "cat" / "linked.jpg").symlink_to(outside / "dog" / "0.jpg")
    os.mkfifo(root / "cat" / "fifo.jpg")
    (root / "cat" / "broken.jpg").symlink_to(root / "cat" / "nothere.jpg")
    summary = _subdirs(tmp_path / "out", root)
    assert summary["num_records"] == 2 and summary["label_map"] == {"cat": 0}
    ignored = summary["ignored"]["examples"]
    assert summary["ignored"]["count"] == 4
    assert "dog (symlink points outside source.image_dir)" in ignored
    assert "cat/linked.jpg (symlink points outside source.image_dir)" in ignored
    assert "cat/fifo.jpg (not a regular file (a FIFO, socket or device))" in ignored
    assert "cat/broken.jpg (broken symlink (missing target or a loop))" in ignored


def test_a_hard_link_is_the_same_image(tmp_path, photos):
    root = tmp_path / "images"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    (root / "cat" / "a.jpg").write_bytes(jpeg_bytes(crop(photos, 1, size=40)))
    (root / "dog" / "b.jpg").write_bytes(jpeg_bytes(crop(photos, 2, size=40)))
    os.link(root / "cat" / "a.jpg", root / "dog" / "same.jpg")
    with pytest.raises(PrepError, match=r"same.jpg is listed again with another label \(first at .*a.jpg.* as cat/a.jpg, the same file\)"):
        _subdirs(tmp_path / "out", root)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat/a.jpg 1\ndog/same.jpg 1\ndog/b.jpg 2\n")
    summary = run(tmp_path / "out2", ImageDirSource(str(root)), SpaceLabels(str(labels)))
    assert summary["num_records"] == 2 and summary["skipped"][0]["source"] == "dog/same.jpg"


def test_names_that_look_odd_but_are_legal_are_found(tmp_path, photos):
    root = tmp_path / "images"
    root.mkdir()
    names = ["9:30.jpg", " lead.jpg", "a\\b.jpg"]
    for i, name in enumerate(names):
        (root / name).write_bytes(jpeg_bytes(crop(photos, i, size=40)))
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"file_name": n, "label": 1}) + "\n" for n in names))
    from prep.labels.jsonl import JsonlLabels

    summary = run(tmp_path / "out", ImageDirSource(str(root)), JsonlLabels(str(labels)))
    assert summary["num_records"] == 3 and not summary["skipped"] and summary["unlabelled"]["count"] == 0


def test_fifos_and_folders_named_in_a_label_file_say_what_they_are(tmp_path, photo_folder):
    root, labels = photo_folder
    os.mkfifo(root / "pipe.jpg")
    (root / "folder.jpg").mkdir()
    labels.write_text(labels.read_text() + "pipe.jpg cat\nfolder.jpg dog\n")
    summary = run(tmp_path / "out", ImageDirSource(str(root)), SpaceLabels(str(labels)))
    reasons = {s["source"]: s["reason"] for s in summary["skipped"]}
    assert reasons == {"pipe.jpg": "not a regular file (a FIFO, socket or device)", "folder.jpg": "a folder, not an image file"}


def test_an_interrupted_overwrite_never_looks_finished(tmp_path, monkeypatch):
    out = tmp_path / "out"
    run(out, limit=60, shard_size=5)
    with deleting_dies_after(monkeypatch, 4) as removed:
        run(out, limit=60, shard_size=5, overwrite=True)
    assert removed[0].endswith("summary.json") and not (out / "summary.json").exists()
    with pytest.raises(ConfigError, match="holds an unfinished run"):
        run(out, limit=60, shard_size=5)
    summary = run(out, limit=60, shard_size=5, overwrite=True)  # the interrupted overwrite can be finished
    assert summary["num_records"] == 60 and sorted(p.name for p in out.glob("test-*")) == sorted(s["path"] for s in summary["shards"])


def test_an_unfinished_run_owns_no_labels_csv_it_never_wrote(tmp_path, photo_folder):
    root, labels = photo_folder
    out = tmp_path / "out"
    _interrupted(out, ImageDirSource(str(root)), SpaceLabels(str(labels)), fail_at=1)
    (out / "labels.csv").write_text("mine\n")
    for kwargs in ({"overwrite": True}, {"resume": True}):
        with pytest.raises(ConfigError, match=r"is not empty \(labels.csv\)"):
            run(out, ImageDirSource(str(root)), SpaceLabels(str(labels)), shard_size=4, **kwargs)
    assert (out / "labels.csv").read_text() == "mine\n"


def test_a_finished_run_owns_exactly_what_its_summary_lists(tmp_path):
    out = tmp_path / "out"
    summary = run(out, limit=20, shard_size=10)
    shard = summary["shards"][0]["path"]
    (out / f"{shard}.idx").write_text("0 100\n")  # the run wrote no index files: these are the user's
    (out / f"{shard}.partial").write_text("draft")
    with pytest.raises(ConfigError, match=r"is not empty \(.*\.idx, .*\.partial\)"):
        run(out, limit=20, shard_size=10, overwrite=True)


def test_resume_rewrites_a_shard_whose_index_file_was_changed(tmp_path, photo_folder):
    root, labels = photo_folder
    out = tmp_path / "out"

    def go(**kwargs):
        return convert(
            name="t", source=ImageDirSource(str(root)), labels=SpaceLabels(str(labels)), splitter=NoSplit("train"),
            encoder=PassthroughEncoder(), writer=TFRecordWriter(shard_size=4, features=SLIM, dali_index=True),
            executor=LocalExecutor(1), output_dir=str(out), progress=False, **kwargs,
        )

    with shard_task_dies(2):
        go()
    (out / "t-train.tfrecord-00000-of-00003.idx").write_text("0 100\n")
    go(resume=True)
    from prep.tools.verify import verify_run

    assert all(ok for ok, _ in verify_run(str(out)))


def test_resume_of_a_pixel_csv_rewrites_everything_after_the_csv_changed(tmp_path):
    from prep.sources.pixel_csv import PixelCsvSource

    rows = [",".join([str(i % 3)] + [str((i * 7 + j) % 256) for j in range(16)]) for i in range(12)]
    csv_file = tmp_path / "px.csv"
    csv_file.write_text("\n".join(rows) + "\n")

    def go(out, **kwargs):
        return convert(name="test", source=PixelCsvSource(str(csv_file), shape=[4, 4]), labels=EmbeddedLabels(), splitter=NoSplit("train"),
                       encoder=ImageEncoder("png"), writer=TFRecordWriter(shard_size=4, features=SLIM), executor=LocalExecutor(1),
                       output_dir=str(out), progress=False, **kwargs)

    with shard_task_dies(2):
        go(tmp_path / "out")
    rows[0] = rows[0][:2] + "255" + rows[0][rows[0].index(",", 2):]  # one pixel of the first image changes
    csv_file.write_text("\n".join(rows) + "\n")
    resumed = go(tmp_path / "out", resume=True)
    clean = go(tmp_path / "clean")
    assert [s["sha256"] for s in resumed["shards"]] == [s["sha256"] for s in clean["shards"]]


def test_output_inside_another_runs_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    run(out, limit=10)
    with pytest.raises(ConfigError, match="is inside .*out, the output folder of another prep run"):
        run(out / "inner", limit=10)
    assert not (out / "inner").exists()


def test_a_refused_run_leaves_not_even_a_lock_file(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("n")
    with pytest.raises(ConfigError, match="is not empty"):
        run(folder, limit=10)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_a_fifo_where_prep_keeps_its_records_is_an_error_not_a_hang(tmp_path):
    for name in ("summary.json", "prep.log"):
        out = tmp_path / name.replace(".", "_")
        out.mkdir()
        os.mkfifo(out / name)
        started = time.monotonic()
        proc = run_prep("limit=10", f"hydra.run.dir={out}", "overwrite=true", check=False, timeout=60)
        assert time.monotonic() - started < 30 and proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_symlinked_log_and_config_folder_are_never_written_through(tmp_path):
    outside = tmp_path / "outside"
    (outside / "hv").mkdir(parents=True)
    (outside / "victim.log").write_text("mine\n")
    (outside / "hv" / "config.yaml").write_text("user\n")
    for name, target in (("prep.log", outside / "victim.log"), (".hydra", outside / "hv")):
        run_dir = tmp_path / f"run{name}"
        run_dir.mkdir()
        (run_dir / name).symlink_to(target)
        proc = run_prep("limit=10", f"hydra.run.dir={run_dir}", check=False)
        assert proc.returncode == 1 and f"is not empty ({name})" in proc.stderr
    assert (outside / "victim.log").read_text() == "mine\n" and (outside / "hv" / "config.yaml").read_text() == "user\n"


def test_a_file_name_that_is_not_utf8_is_stored_as_its_bytes(tmp_path, photos):
    root = tmp_path / "images"
    (root / "cat").mkdir(parents=True)
    raw = os.fsencode(str(root / "cat")) + b"/\xff\xfe.jpg"
    with open(raw, "wb") as f:
        f.write(jpeg_bytes(crop(photos, 3, size=40)))
    summary = _subdirs(tmp_path / "out", root)
    from prep.load import records

    assert summary["num_records"] == 1
    assert next(records(str(tmp_path / "out")))["image/filename"] == b"cat/\xff\xfe.jpg"


@pytest.mark.parametrize(
    "args, message",
    [
        (["hydra.run.dir={tmp}/afile/sub"], "error: {tmp}/afile/sub: Not a directory"),
        (["~name"], "error: Key 'name' not in 'PrepConf'"),
        (["features=null"], "error: Config group override must be a string or a list"),
        (["+limt=3"], "limt: not a setting of prep; did you mean limit?"),
    ],
)
def test_what_hydra_cannot_do_is_one_line_too(tmp_path, args, message):
    (tmp_path / "afile").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = run_prep(*args, *([] if any(a.startswith("hydra.run.dir") for a in args) else [f"hydra.run.dir={tmp_path / 'run'}"]),
                    cwd=tmp_path, check=False)
    assert proc.returncode == 1 and message.replace("{tmp}", str(tmp_path)) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_name_never_puts_the_run_folder_outside_outputs(tmp_path):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    proc = run_prep("name=../../esc", cwd=work, check=False)
    assert proc.returncode == 1 and "the dataset name must be a plain word" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"] and sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]


@pytest.mark.slow
def test_a_failed_sweep_job_does_not_stop_the_others(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_prep("-m", "limit=20", "writer.shard_size=null", "writer.num_shards=100,2", f"hydra.sweep.dir={sweep}", check=False)
    assert proc.returncode == 1 and "1 job(s) of the sweep failed" in proc.stderr
    assert (sweep / "1" / "summary.json").exists() and not (sweep / "0" / "summary.json").exists()
    table = (sweep / "sweep_summary.csv").read_text().splitlines()
    assert table[1].startswith("0,") and ",failed," in table[1] and ",ok," in table[2]


def test_resume_after_an_overwrite_killed_while_deleting_clears_the_old_run(tmp_path, monkeypatch):
    out = tmp_path / "out"
    run(out, limit=60, shard_size=5, pattern="{split}/old-{index}")
    with deleting_dies_after(monkeypatch, 3):
        run(out, limit=60, shard_size=10, pattern="{split}/new-{index}", overwrite=True)
    summary = run(out, limit=60, shard_size=10, pattern="{split}/new-{index}", resume=True)
    assert sorted(str(p.relative_to(out)) for p in (out / "train").iterdir()) == sorted(s["path"] for s in summary["shards"])
    from prep.tools.verify import verify_run

    assert all(ok for ok, _ in verify_run(str(out)))


def test_an_override_that_cannot_resolve_is_one_line(tmp_path):
    proc = run_prep("output_dir=${oc.env:PREP_TEST_NOT_SET}", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode == 1 and "Environment variable 'PREP_TEST_NOT_SET' not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_verify_does_not_follow_a_shard_replaced_by_a_symlink(tmp_path):
    out = tmp_path / "out"
    summary = run(out, limit=20, shard_size=10)
    shard = out / summary["shards"][0]["path"]
    copy = tmp_path / "elsewhere"
    copy.write_bytes(shard.read_bytes())
    shard.unlink()
    shard.symlink_to(copy)
    from prep.tools.verify import verify_run

    lines = [line for ok, line in verify_run(str(out)) if not ok]
    assert lines and "a symlink to" in lines[0] and "not the shard the run wrote" in lines[0]


def test_json_files_are_streamed_with_json_dumps_bytes_and_appear_whole(tmp_path, monkeypatch):
    """summary.json and plan.json are encoded piece by piece (a run with 900,000 skips is a 150 MB file): the
    bytes are json.dumps's, and a write that fails part-way leaves neither the file nor a .partial."""
    from prep.core import storage

    value = {"b": [{"source": f"im\u00e9_{i}.jpg", "reason": "missing", "n": i / 7} for i in range(40_000)], "a": {"x": None, "y": [True, 1e300]}}
    storage.write_json(str(tmp_path / "s.json"), value)
    assert (tmp_path / "s.json").read_bytes() == (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()

    from prep.core import nofollow

    class Full(io.RawIOBase):
        def write(self, data):
            raise OSError(28, "No space left on device")

    real_file = nofollow.file_object
    monkeypatch.setattr(nofollow, "file_object", lambda fd, path, buffering: Full() if "t.json" in os.path.basename(str(path)) else real_file(fd, path, buffering))
    with pytest.raises(OSError, match="No space left"):
        storage.write_json(str(tmp_path / "t.json"), value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_json_files_are_whole_when_the_disk_takes_each_write_only_in_part(tmp_path, monkeypatch):
    """A nearly full disk (or a file-size limit) takes part of a write and says how much, without an error: the
    rest must still be written (or the write fail), never a truncated summary.json published as complete."""
    from prep.core import storage

    from prep.core import nofollow

    class Partial(io.FileIO):
        def write(self, data):
            return super().write(bytes(data)[:1000])  # as much as fits, and the count of it

    def partial_disk(fd, path, buffering):
        raw = Partial(fd, "wb")
        return raw if buffering == 0 else io.BufferedWriter(raw, buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE)

    monkeypatch.setattr(nofollow, "file_object", partial_disk)
    value = {"skipped": [{"source": f"x{i}.jpg", "reason": "missing"} for i in range(20_000)]}
    storage.write_json(str(tmp_path / "summary.json"), value)
    assert (tmp_path / "summary.json").read_bytes() == (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
