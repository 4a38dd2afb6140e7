"""Bad input, interruptions and verification: nothing lost, nothing half-written, every problem named."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, crop, jpeg_bytes, png_bytes, run_prep

from prep.formats import tfrecord

pytestmark = pytest.mark.slow


@pytest.fixture
def broken_folder(tmp_path, photos):
    """Good JPEGs mixed with every kind of bad entry a real folder has."""
    root = tmp_path / "images"
    root.mkdir()
    lines = []
    for i in range(8):
        (root / f"good_{i}.jpg").write_bytes(jpeg_bytes(crop(photos, i, size=64)))
        lines.append(f"good_{i}.jpg {i % 2}")
    jpeg = jpeg_bytes(crop(photos, 9, size=64))
    bad = {
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": png_bytes(crop(photos, 10, size=64))[:-20],
        "garbage.jpg": b"<html><body>404 Not Found</body></html>",
        "badheader.jpg": b"\xff\xd8\xff\xe0\x00\x02\xff\xda\x00\x02" + b"\x00" * 50,
        "huge.jpg": jpeg_bytes(crop(photos, 11, size=300)),
    }
    for name, data in bad.items():
        (root / name).write_bytes(data)
    (root / "unlabelled.jpg").write_bytes(jpeg)
    (tmp_path / "secret.jpg").write_bytes(jpeg)
    (root / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    lines[3:3] = ["missing.jpg 1", "../secret.jpg 0", f"{tmp_path / 'secret.jpg'} 0", "link.jpg 1"]
    lines += [f"{name} 0" for name in bad]
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    return root, tmp_path / "val.txt"


EXPECTED_REASONS = {
    "missing.jpg": "listed in the label file but missing from source.image_dir",
    "../secret.jpg": "path escapes source.image_dir",
    "secret.jpg": "absolute path: label files name images relative to source.image_dir",
    "link.jpg": "symlink points outside source.image_dir",
    "empty.jpg": "empty file",
    "truncated.jpg": "truncated jpeg: the data ends before its EOI marker",
    "truncated.png": "truncated png: the chunks end before the IEND chunk",
    "garbage.jpg": "not a known image format (starts with 3c68746d6c3e3c62)",
    "badheader.jpg": "corrupt JPEG: no frame header before the image data",
    "huge.jpg": "300x300 is over max_pixels=40000 (a decompression-bomb guard; raise it to convert)",
}


def images_args(root, labels, out, *extra):
    return ("dataset=images", f"source.image_dir={root}", f"labels.path={labels}", "max_pixels=40000", f"hydra.run.dir={out}", *extra)


def test_bad_images_are_skipped_named_and_listed(tmp_path, broken_folder):
    out = tmp_path / "run"
    proc = run_prep(*images_args(*broken_folder, out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_records"] == 8
    got = {s["source"].replace(str(broken_folder[0].parent) + "/", ""): s["reason"] for s in summary["skipped"]}
    assert got == EXPECTED_REASONS
    assert [s.get("where") for s in summary["skipped"][:4]] == [f"{broken_folder[1]}:{n}" for n in (4, 5, 6, 7)]
    for name in ("truncated.jpg", "missing.jpg", "link.jpg"):
        assert "skipped" in proc.stderr and name in proc.stderr
    assert summary["unlabelled"] == {"count": 1, "examples": ["unlabelled.jpg"]}
    assert "1 image(s) in" in proc.stderr and "unlabelled.jpg" in proc.stderr


def test_a_label_file_naming_many_absent_images_is_a_few_log_lines(tmp_path, broken_folder):
    """A subset of a dataset with its full label file: every absent image is in summary.json, the log names
    the first 20 of each stage and counts the rest by reason in one line."""
    root, labels = broken_folder
    text = labels.read_text() + "".join(f"absent_{i:03d}.jpg {i % 2}\n" for i in range(300))
    labels.write_text(text)
    out = tmp_path / "run"
    proc = run_prep(*images_args(root, labels, out))
    summary = json.loads((out / "summary.json").read_text())
    planning = [s for s in summary["skipped"] if "where" in s]
    assert len(planning) == 4 + 300 and summary["num_records"] == 8
    lines = [line for line in proc.stderr.splitlines() if "] skipped " in line]
    named = [line for line in lines if " more images (" not in line]
    assert len(named) == 20 + 6  # planning's first 20, then the six bad files found while writing
    # the first 20 are the 4 bad lines and 16 absent images; the rest are absent images
    assert "skipped 284 more images (284 listed in the label file but missing from source.image_dir): summary.json lists every one" in proc.stderr
    assert "truncated.jpg" in proc.stderr and "link.jpg" in proc.stderr


def test_on_error_fail_stops_at_the_first_problem(tmp_path, broken_folder):
    out = tmp_path / "run"
    proc = run_prep(*images_args(*broken_folder, out, "on_error=fail"), check=False)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "missing.jpg: listed in the label file but missing" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (out / "summary.json").exists()

    # With the label-file problems fixed, the first bad image file stops the run, named.
    root, labels = broken_folder
    kept = [l for l in labels.read_text().splitlines() if l.split()[0] not in ("missing.jpg", "../secret.jpg", "link.jpg") and not l.startswith("/")]
    labels.write_text("\n".join(kept) + "\n")
    proc = run_prep(*images_args(root, labels, tmp_path / "run2", "on_error=fail"), check=False)
    assert proc.returncode == 1 and "error: empty.jpg: empty file" in proc.stderr
    assert not (tmp_path / "run2" / "summary.json").exists()
    assert not [p for p in (tmp_path / "run2").rglob("*") if ".tfrecord" in p.name]


def test_max_skipped_turns_a_flood_into_a_failure(tmp_path, broken_folder):
    proc = run_prep(*images_args(*broken_folder, tmp_path / "run", "max_skipped=0.25"), check=False)
    assert proc.returncode == 1 and "more than max_skipped=0.25 allows (4)" in proc.stderr
    assert not (tmp_path / "run" / "summary.json").exists()
    run_prep(*images_args(*broken_folder, tmp_path / "ok", "max_skipped=10"))


@pytest.mark.parametrize(
    "labels, content, message",
    [
        ("space", "a.jpg 1\nimg_extra.jpg two three\n", ':2: expected "filename label", got \'img_extra.jpg two three\''),
        ("jsonl", '{"a.jpg": 1}\n{"b.jpg": 2\n', ":2: not JSON"),
        ("csv", "filename,label\na.jpg,1\nb.jpg,2,3\n", ":3: expected 2 columns as in the header, got 3"),
    ],
)
def test_malformed_label_lines_name_file_and_line_without_traceback(tmp_path, labels, content, message):
    path = tmp_path / "labels.txt"
    path.write_text(content)
    (tmp_path / "img").mkdir()
    proc = run_prep("dataset=images", f"source.image_dir={tmp_path / 'img'}", f"labels={labels}", f"labels.path={path}", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode == 1
    assert f"error: {path}{message}" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert message in (tmp_path / "run" / "prep.log").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["split=stratified", "split.val=0.7", "split.test=0.4"], "add up to 1.1"),
        (["writer.shard_size=-5"], "writer.shard_size=-5: must be a positive integer"),
        (["writer.num_shards=4"], "both set: choose one"),
    ],
)
def test_impossible_settings_are_one_line(tmp_path, args, message):
    proc = run_prep(*args, f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_refusing_to_overwrite_changes_nothing(tmp_path):
    out = tmp_path / "run"
    run_prep("limit=50", f"hydra.run.dir={out}")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file() and p.suffix != ".log"}
    proc = run_prep("limit=60", f"hydra.run.dir={out}", check=False)
    assert proc.returncode == 1 and "already holds a finished run (summary.json); pass overwrite=true" in proc.stderr
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file() and p.suffix != ".log" and p.parent.name != ".hydra"}
    assert after == {p: v for p, v in before.items() if p.parent.name != ".hydra"}
    other = tmp_path / "foreign"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    proc = run_prep(f"output_dir={other}", f"hydra.run.dir={tmp_path / 'run2'}", check=False)
    assert proc.returncode == 1 and "is not empty (notes.txt)" in proc.stderr
    run_prep("limit=60", "overwrite=true", f"hydra.run.dir={out}")
    assert json.loads((out / "summary.json").read_text())["num_records"] == 60


@pytest.fixture(scope="module")
def slow_folder(tmp_path_factory, photos):
    """Large photos re-encoded as PNG at the highest compression: slow enough to interrupt mid-run."""
    tmp_path = tmp_path_factory.mktemp("slow")
    root = tmp_path / "photos"
    root.mkdir()
    lines = []
    for i in range(40):
        (root / f"{i:03d}.jpg").write_bytes(jpeg_bytes(photos[i % 2][(i % 7) : 420, (i % 5) : 630], quality=95))
        lines.append(f"{i:03d}.jpg {i % 3}")
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    return root, tmp_path / "val.txt"


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, slow_folder):
    """The same conversion, never interrupted: what every resumed run must equal byte for byte."""
    out = tmp_path_factory.mktemp("clean") / "run"
    run_prep(*slow_args(slow_folder, out))
    return [s["sha256"] for s in json.loads((out / "summary.json").read_text())["shards"]]


def slow_args(folder, out, *extra):
    root, labels = folder
    return ["dataset=images", f"source.image_dir={root}", f"labels.path={labels}", "encoder=png", "encoder.png_compression=9",
            "writer.shard_size=4", f"hydra.run.dir={out}", *extra]


def final_shards(out):
    return sorted(p for p in out.glob("images-train.tfrecord-*") if not p.name.endswith(".partial"))


def assert_no_half_written_shard(out):
    for path in final_shards(out):
        with open(path, "rb") as f:
            assert len(list(tfrecord.read_records(f, path.name))) == 4  # complete: every record, every CRC


@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, 2), (signal.SIGKILL, 1), (signal.SIGTERM, 2)])
def test_interrupted_run_leaves_no_partial_output_and_resumes_identically(tmp_path, slow_folder, clean_run, sig, workers):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "prep", *slow_args(slow_folder, out, f"executor.workers={workers}")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    while len(final_shards(out)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    time.sleep(0.5)  # let killed workers go
    assert not (out / "summary.json").exists()
    assert len(final_shards(out)) < 10
    assert_no_half_written_shard(out)
    if sig != signal.SIGKILL:
        assert "interrupted" in stderr and "resume=true" in stderr
        assert not list(out.glob("*.partial"))

    proc = run_prep(*slow_args(slow_folder, out, "resume=true"), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "resume:" in proc.stderr and "are finished and unchanged" in proc.stderr
    assert [s["sha256"] for s in json.loads((out / "summary.json").read_text())["shards"]] == clean_run
    assert not (out / ".prep-manifest").exists()


def test_unfinished_run_is_refused_without_resume(tmp_path, slow_folder):
    out = tmp_path / "run"
    (out / ".prep-manifest").mkdir(parents=True)
    (out / ".prep-manifest" / "run.json").write_text('{"fingerprint": "x"}')
    proc = run_prep(*slow_args(slow_folder, out), check=False)
    assert proc.returncode == 1 and "holds an unfinished run" in proc.stderr
    proc = run_prep(*slow_args(slow_folder, out, "resume=true"), check=False)
    assert proc.returncode == 1 and "was written with another config" in proc.stderr


def test_verify_catches_flipped_truncated_and_deleted_shards(tmp_path):
    out = tmp_path / "run"
    run_prep("writer.shard_size=400", "verify=true", f"hydra.run.dir={out}")
    ok = run_prep(str(out), "--decode", module="prep.verify")
    assert ok.stdout.splitlines()[-1] == "5 of 5 shards ok"
    shards = [out / s["path"] for s in json.loads((out / "summary.json").read_text())["shards"]]

    data = bytearray(shards[0].read_bytes())
    data[5000] ^= 0x40
    shards[0].write_bytes(bytes(data))
    shards[1].write_bytes(shards[1].read_bytes()[:-100])
    shards[2].unlink()
    proc = run_prep(str(out), module="prep.verify", check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("FAIL digits-train.tfrecord-00000-of-00005: record ") and "CRC mismatch" in lines[0]
    assert lines[1].startswith("FAIL digits-train.tfrecord-00001-of-00005: record ") and "truncated" in lines[1]
    assert lines[2] == "FAIL digits-train.tfrecord-00002-of-00005: missing"
    assert lines[3].startswith("ok   ") and lines[-1] == "2 of 5 shards ok, 3 failed"
