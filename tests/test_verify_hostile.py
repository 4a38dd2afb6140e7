"""prep.verify, prep.inspect and prep.load against what a hostile tester put in a run folder.

Each test closes one reported break: int64 class ids at the ends of the range, FIFOs and devices where
files belong, stray shards hidden by compression, symlinks or prep's own folders, decompression bombs
under --decode and --grid, lone compressed shards, and class names that need CSV quoting.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import shutil
import signal
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_verify import HYPOTHESIS, SLIM, call

from prep import load
from prep.core.errors import InputError
from prep.encoders.image import ImageEncoder
from prep.executors.local import LocalExecutor
from prep.formats import ofrecord
from prep.labels.base import LabelFormat
from prep.labels.embedded import EmbeddedLabels
from prep.pipeline import convert
from prep.runfiles import summary as summaries
from prep.sources.base import LabelEntry
from prep.sources.digits import DigitsSource
from prep.split import NoSplit
from prep.tools import inspect, verify
from prep.writers import TFRecordWriter

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
HUGE_IDS = [1234567890123456789, INT64_MIN, INT64_MAX]


class HugeIdLabels(LabelFormat):
    """Integer labels at the ends of int64 (a run of these exits 0, so the tools must read it back)."""

    def iter_entries(self, source) -> Iterator[LabelEntry]:
        return iter([LabelEntry(e.name, str(HUGE_IDS[int(e.label) % 3]), e.where, e.ref) for e in source.labelled_entries()])


def convert_digits(out: Path, writer, labels=None, limit: int = 12) -> dict:
    return convert(
        name="digits", source=DigitsSource(), labels=labels or EmbeddedLabels(), splitter=NoSplit("train"),
        encoder=ImageEncoder("png"), writer=writer, executor=LocalExecutor(1), output_dir=str(out), limit=limit, progress=False,
    )


@pytest.fixture(scope="module")
def huge_id_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("huge") / "run"
    convert_digits(out, TFRecordWriter(shard_size=6, features=SLIM), HugeIdLabels())
    return out


# --- B13: every int64 is a class id ------------------------------------------------------------------


def test_a_run_with_int64_extreme_labels_verifies_inspects_and_loads(huge_id_run):
    summary = json.loads((huge_id_run / "summary.json").read_text())
    assert set(summary["splits"]["train"]["classes"]) == {str(i) for i in HUGE_IDS}
    code, lines, err = call(verify.main, huge_id_run)
    assert (code, err) == (0, "") and lines[-1] == "2 of 2 shards ok"
    assert "ok   split train: 12 records in 2 shard(s), 3 classes, as read" in lines
    code, lines, err = call(inspect.main, huge_id_run, "-n", "1")
    assert (code, err) == (0, "") and any(l.startswith("  image/class/label: ") and int(l.split(": ")[1]) in HUGE_IDS for l in lines)
    assert {r["image/class/label"] for r in load.records(str(huge_id_run))} == set(HUGE_IDS)


@pytest.mark.parametrize("label", [INT64_MIN, -1, 0, 7, INT64_MAX])
def test_every_int64_is_a_class_id_in_classes_and_label_map(label):
    summary = {
        "dataset": "d", "format": "tfrecord", "num_records": 1, "shards": [], "features": {}, "feature_fields": {},
        "splits": {"train": {"num_records": 1, "num_shards": 0, "classes": {str(label): 1}}}, "label_map": {"x": label},
    }
    assert summaries.validate(summary) is summary


@pytest.mark.parametrize("key", [str(INT64_MAX + 1), str(INT64_MIN - 1), "9" * 20, "-0", "+1", "01", "1 ", "١"])
def test_class_keys_outside_int64_are_refused(key):
    summary = {
        "dataset": "d", "format": "tfrecord", "num_records": 1, "shards": [], "features": {}, "feature_fields": {},
        "splits": {"train": {"num_records": 1, "num_shards": 0, "classes": {key: 1}}},
    }
    with pytest.raises(InputError, match=r"splits\.train\.classes: .* is not a class id"):
        summaries.validate(summary)


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, True, 1.0, "3"])
def test_label_map_values_outside_int64_are_refused(value):
    summary = {
        "dataset": "d", "format": "tfrecord", "num_records": 0, "shards": [], "features": {}, "feature_fields": {},
        "splits": {}, "label_map": {"x": value},
    }
    with pytest.raises(InputError, match=r"label_map\.x: expected a class id"):
        summaries.validate(summary)


# --- B16/B20: FIFOs, devices and sockets never hang a tool, and are reported ----------------------------


@contextlib.contextmanager
def deadline(seconds: int = 20):
    """Fail instead of hanging: a blocked open() of a FIFO is interrupted by the alarm."""

    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> Path:
    """An uncompressed TFRecord run with DALI index files, two shards."""
    out = tmp_path_factory.mktemp("plain") / "run"
    convert_digits(out, TFRecordWriter(shard_size=6, features=SLIM, dali_index=True))
    return out


@pytest.fixture
def run(plain_run, tmp_path) -> Path:
    return Path(shutil.copytree(plain_run, tmp_path / "run"))


def shard_bytes(run: Path, i: int = 0) -> bytes:
    return (run / json.loads((run / "summary.json").read_text())["shards"][i]["path"]).read_bytes()


def failures(run: Path, *args: str) -> list[str]:
    with deadline():
        code, lines, err = call(verify.main, run, *args)
    assert err == "" and code == (1 if any(l.startswith("FAIL") for l in lines) else 0)
    return [l for l in lines if l.startswith("FAIL")]


@pytest.mark.parametrize("make", ["fifo", "dev_zero"])
def test_a_summary_that_is_a_fifo_or_dev_zero_is_one_error_line(run, make):
    summary = run / "summary.json"
    summary.unlink()
    os.mkfifo(summary) if make == "fifo" else summary.symlink_to("/dev/zero")
    # a link is never followed out of the run folder (test_hostile_readers.py), so /dev/zero is never opened
    problem = "cannot read: not a regular file (a FIFO, socket or device)" if make == "fifo" else "is a symbolic link: prep reads only files inside the run folder"
    message = f"error: {summary}: {problem}\n"
    with deadline():
        assert call(verify.main, run) == (1, [], message)
        assert call(inspect.main, run) == (1, [], message)
        with pytest.raises(InputError, match="not a regular file" if make == "fifo" else "is a symbolic link"):
            next(load.records(str(run)))


def test_fifos_sockets_and_devices_in_the_run_folder_are_reported_unopened(run, monkeypatch):
    os.mkfifo(run / "stray.pipe")
    (run / "sub").mkdir()
    os.mkfifo(run / "sub" / "digits-train.tfrecord-00009-of-00009")
    monkeypatch.chdir(run)  # a socket's path must be short: bind it by its relative name
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("stray.sock")
    try:
        assert failures(run) == [
            "FAIL stray.pipe: not a regular file, not in summary.json",
            "FAIL stray.sock: not a regular file, not in summary.json",
            "FAIL sub/digits-train.tfrecord-00009-of-00009: not a regular file, not in summary.json",
        ]
    finally:
        sock.close()


def test_a_shard_that_is_a_fifo_fails_in_verify_inspect_and_load(run):
    name = json.loads((run / "summary.json").read_text())["shards"][0]["path"]
    (run / name).unlink()
    os.mkfifo(run / name)
    assert failures(run)[0] == f"FAIL {name}: cannot read: not a regular file (a FIFO, socket or device)"
    with deadline():
        code, _, err = call(inspect.main, run / name)
        assert (code, err) == (1, f"error: {run / name}: cannot read: not a regular file (a FIFO, socket or device)\n")
        with pytest.raises(InputError, match=f"{name}: cannot read: not a regular file"):
            list(load.records(str(run)))


def test_tf_dataset_refuses_a_shard_that_is_a_fifo(run, tf):
    name = json.loads((run / "summary.json").read_text())["shards"][1]["path"]
    (run / name).unlink()
    os.mkfifo(run / name)
    with deadline(), pytest.raises(InputError, match=f"{name}: cannot read: not a regular file"):
        load.tf_dataset(str(run))


# --- B24: stray shards hidden by compression, symlinks, or prep's own folders --------------------------


def test_stray_records_are_found_whatever_their_compression_and_format(run):
    data = shard_bytes(run)
    (run / "backup.bin").write_bytes(gzip.compress(data))
    (run / "backup.z").write_bytes(zlib.compress(data))
    (run / "old.dat").write_bytes(data)
    of_record = ofrecord.encode_record({"images": ("bytes", [b"\x89PNG"]), "labels": ("int32", [3])})
    (run / "of.bin").write_bytes(ofrecord.frame_header(len(of_record)) + of_record)
    (run / "notes.gz").write_bytes(gzip.compress(b"my notes, nothing like records"))
    (run / "notes.txt").write_text("my notes")
    assert failures(run) == [
        "FAIL backup.bin: not in summary.json, but holds gzip-compressed tfrecord records",
        "FAIL backup.z: not in summary.json, but holds zlib-compressed tfrecord records",
        "FAIL of.bin: not in summary.json, but holds ofrecord records",
        "FAIL old.dat: not in summary.json, but holds tfrecord records",
    ]


def test_the_probe_of_a_stray_file_reads_a_bounded_amount(tmp_path):
    record = ofrecord.encode_record({"images": ("bytes", [b"x" * 5000])})
    path = tmp_path / "big.gz"
    path.write_bytes(gzip.compress(ofrecord.frame_header(len(record)) + record))
    assert load.sniff_records(str(path)) == ("ofrecord", "gzip")
    assert load.sniff_records(str(path), max_bytes=1000) is None


def test_symlinks_in_the_run_folder_are_reported_not_followed(run, tmp_path):
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "backup.bin").write_bytes(shard_bytes(run))
    (run / "more").symlink_to("../ext")
    (run / "link.bin").symlink_to(ext / "backup.bin")
    (run / "zero").symlink_to("/dev/zero")
    (run / "dangling").symlink_to(tmp_path / "nowhere")
    assert failures(run) == [
        "FAIL dangling: not in summary.json (a symlink)",
        "FAIL link.bin: not in summary.json (a symlink)",
        "FAIL more: not in summary.json (a symlink)",
        "FAIL zero: not in summary.json (a symlink)",
    ]


def test_a_folder_that_cannot_be_listed_is_reported(run, monkeypatch):
    (run / "locked").mkdir()
    real = os.scandir

    def scandir(path):  # as chmod 000 would (tests may run as root, which reads any folder)
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert failures(run) == ["FAIL locked: a folder that cannot be listed (Permission denied), so unlisted shards in it would be missed"]


def test_a_symlinked_folder_of_listed_shards_is_reported_and_its_shards_not_read(tmp_path):
    from prep.writers import OFRecordWriter

    run = tmp_path / "run"
    convert_digits(run, OFRecordWriter(num_shards=2, features={"images": "encoded", "labels": "label:int32"}))
    (tmp_path / "ext").mkdir()
    shutil.move(run / "train", tmp_path / "ext" / "train")
    (run / "train").symlink_to("../ext/train")
    with deadline():
        code, lines, _ = call(verify.main, run)
    # the shards are read only inside the run folder: never through the symlinked folder (test_hostile_readers.py)
    link = "its folder train is a symbolic link: prep reads only files inside the run folder"
    assert code == 1 and lines[:2] == [f"FAIL train/part-0: {link}", f"FAIL train/part-1: {link}"]
    assert [l for l in lines[2:] if l.startswith("FAIL")] == [
        "FAIL train: a symlink, not followed: files in it other than the listed shards are not checked",
    ]


def test_stray_shards_in_prep_and_hydra_folders_are_found(run):
    data = shard_bytes(run)
    (run / ".hydra").mkdir()
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (run / ".hydra" / name).write_text("a: 1\n")
    (run / ".hydra" / "backup.bin").write_bytes(data)
    (run / ".hydra" / "deeper").mkdir()
    (run / ".hydra" / "deeper" / "config.yaml").write_text("a: 1\n")
    (run / ".prep-manifest").mkdir()
    (run / ".prep-manifest" / "run.json").write_bytes(data)
    assert failures(run) == [
        "FAIL .hydra/backup.bin: not in summary.json, in .hydra/ (which holds only config.yaml, hydra.yaml, overrides.yaml)",
        "FAIL .hydra/deeper/config.yaml: not in summary.json, in .hydra/ (which holds only config.yaml, hydra.yaml, overrides.yaml)",
        "FAIL .prep-manifest: an unfinished run's manifest beside summary.json",
    ]


def test_a_run_being_verified_before_its_summary_is_written_may_hold_its_manifest(run):
    summary = summaries.load(str(run))
    (run / "summary.json").unlink()
    (run / ".prep-manifest").mkdir()
    (run / ".prep-manifest" / "run.json").write_text("{}")
    assert [line for ok, line in verify.verify_run(str(run), summary) if not ok] == []


# --- B25: decoding checks the size in the header against max_pixels first ---------------------------


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height (8-bit gray) and whose pixels are almost all missing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb_run(tmp_path_factory, photos) -> tuple[Path, int]:
    """A passthrough run (its max_pixels raised) holding two photos and a PNG declaring 30000x30000."""
    from conftest import crop, png_bytes

    from prep.encoders.passthrough import PassthroughEncoder
    from prep.labels.space import SpaceLabels
    from prep.sources.image_dir import ImageDirSource

    root = tmp_path_factory.mktemp("bomb")
    (root / "images").mkdir()
    (root / "images" / "a.png").write_bytes(png_bytes(crop(photos, 1)))
    (root / "images" / "b.png").write_bytes(png_bytes(crop(photos, 2)))
    (root / "images" / "c.png").write_bytes(png_declaring(30000, 30000))
    (root / "labels.txt").write_text("a.png 0\nb.png 1\nc.png 2\n")
    out = root / "run"
    convert(
        name="bomb", source=ImageDirSource(str(root / "images")), labels=SpaceLabels(str(root / "labels.txt")), splitter=NoSplit("train"),
        encoder=PassthroughEncoder(max_pixels=10**10), writer=TFRecordWriter(shard_size=10, features=SLIM), executor=LocalExecutor(1),
        output_dir=str(out), progress=False,
    )
    index = next(i for i, r in enumerate(load.records(str(out))) if r["image/height"] == 30000)
    return out, index


@pytest.fixture
def imdecode_refuses_the_bomb(monkeypatch):
    """cv2.imdecode, but an AssertionError for the 30000x30000 PNG: no decoder may be handed it."""
    import cv2

    real = cv2.imdecode

    def imdecode(buf, flags):
        assert bytes(buf[16:24]) != struct.pack(">II", 30000, 30000), "cv2.imdecode was handed a 30000x30000 image"
        return real(buf, flags)

    monkeypatch.setattr(cv2, "imdecode", imdecode)


def test_verify_decode_reports_an_image_over_max_pixels_without_decoding_it(bomb_run, imdecode_refuses_the_bomb):
    run, index = bomb_run
    shard = json.loads((run / "summary.json").read_text())["shards"][0]["path"]
    assert failures(run, "--decode") == [f"FAIL {shard}: record {index}: 30000x30000 is over max_pixels=400000000 (raise --max-pixels to decode it)"]
    assert failures(run, "--decode", "--max-pixels", "100") == [f"FAIL {shard}: record 0: {'x'.join(map(str, first_size(run)))} is over max_pixels=100 (raise --max-pixels to decode it)"]


def first_size(run: Path) -> tuple[int, int]:
    record = next(load.records(str(run)))
    return record["image/width"], record["image/height"]


def test_verify_max_pixels_must_be_positive(run):
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
        verify.main([str(run), "--max-pixels", "0"])
    assert "--max-pixels: '0': give a whole number >= 1" in err.getvalue()


def test_inspect_grid_draws_a_placeholder_for_an_image_over_max_pixels(bomb_run, tmp_path, imdecode_refuses_the_bomb):
    import cv2

    run, index = bomb_run
    grid = tmp_path / "grid.png"
    code, lines, err = call(inspect.main, run, "--grid", grid, "--columns", "3", "-n", "0")
    assert (code, err) == (0, "")
    assert lines[1:] == [
        f"note: record {index}: 30000x30000 is over max_pixels=400000000, drawn as a grey cell (raise --max-pixels to see it)",
        f"contact sheet of 3 images: {grid} (288x118)",
    ]
    sheet = cv2.imread(str(grid))
    cells = [sheet[:96, i * 96 : (i + 1) * 96] for i in range(3)]
    assert (cells[index] == inspect.PLACEHOLDER).all()
    assert all(cell.std() > 10 for i, cell in enumerate(cells) if i != index)  # the photos are drawn
    code, lines, _ = call(inspect.main, run, "--grid", grid, "-n", "0", "--max-pixels", "100")
    assert code == 0 and sum(l.startswith("note: record ") for l in lines) == 3


# --- Q5: a lone compressed shard ----------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "zlib"])
def test_inspect_reads_a_lone_compressed_shard(tmp_path, compression):
    out = tmp_path / "run"
    convert_digits(out, TFRecordWriter(shard_size=6, features=SLIM, compression=compression))
    name = json.loads((out / "summary.json").read_text())["shards"][0]["path"]
    lone = tmp_path / "lone"
    shutil.copy(out / name, lone)
    assert load.sniff_records(str(lone)) == ("tfrecord", compression)
    code, lines, err = call(inspect.main, lone, "-n", "1")
    assert (code, err) == (0, "") and lines[0] == "record 0:"
    first = next(load.records(str(out)))
    assert f"  image/class/label: {first['image/class/label']}" in lines


def test_an_uncompressed_shard_starting_like_zlib_is_still_read_plain(tmp_path):
    from prep.formats import tfrecord

    payload = tfrecord.encode_example({"x": ("bytes", [b"y" * (0x9C78 - 23)])})  # length field starts 78 9c
    assert len(payload) & 0xFFFF == 0x9C78
    (tmp_path / "shard").write_bytes(tfrecord.frame(payload))
    assert load.sniff_records(str(tmp_path / "shard")) == ("tfrecord", None)


# --- B22: labels.csv reads back to the exact class names ----------------------------------------------


def read_labels_csv(folder: Path) -> list[list[str]]:
    with open(folder / "labels.csv", newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_labels_csv_quotes_what_csv_would_misread(tmp_path):
    names = ["a\rb", "line\nbreak", "x,y", 'say "hi"', " padded ", "tab\tand\x00nul", "", "plain"]
    summary = {"splits": {"train": {"classes": {str(i): i + 1 for i in range(len(names))}}, "test": {"classes": {"0": 4}}}}
    summaries.write_labels_csv(str(tmp_path), summary, names)
    rows = read_labels_csv(tmp_path)
    assert rows[0] == ["class_id", "class_name", "train", "test"]
    assert rows[1:] == [[str(i), name, str(i + 1), "4" if i == 0 else "0"] for i, name in enumerate(names)]
    text = (tmp_path / "labels.csv").read_bytes()
    assert b"\r\n" not in text and text.endswith(b"\n")
    assert b'\n7,plain,8,0\n' in text and b'\n0,"a\rb",1,4\n' in text  # plain names stay bare


@HYPOTHESIS
@given(names=st.lists(st.text(st.characters(blacklist_categories=("Cs",))), min_size=1, max_size=4, unique=True))
def test_any_class_name_round_trips_through_labels_csv(tmp_path_factory, names):
    folder = tmp_path_factory.mktemp("csv")
    summary = {"splits": {"train": {"classes": {str(i): 1 for i in range(len(names))}}}}
    summaries.write_labels_csv(str(folder), summary, names)
    assert read_labels_csv(folder) == [["class_id", "class_name", "train"]] + [[str(i), name, "1"] for i, name in enumerate(names)]
