"""The readers and tools (prep.load, RecordDataset, the consumer helpers, prep-verify, prep-inspect, prep-report)
against a run folder crafted by someone else: they never leave the run folder, never crash.

Each section closes one class of break: files reached through a symbolic link (the file itself or a folder on
its way), lengths and offsets from an index or a frame header that the file cannot hold, summary values that
validation lets through and the report draws, files the report would embed because the run folder names them,
a report written while a run replaces the folder, and DALI index folders that hold the run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_verify import HYPOTHESIS, SLIM, call

from prep import load
from prep.core.errors import ConfigError, InputError, PrepError
from prep.encoders.image import ImageEncoder
from prep.executors.local import LocalExecutor
from prep.labels.embedded import EmbeddedLabels
from prep.pipeline import convert
from prep.sources.digits import DigitsSource
from prep.split import NoSplit, StratifiedSplit
from prep.tools import inspect, report, verify
from prep.writers import OFRecordWriter, TFRecordWriter

LINK = "is a symbolic link: prep reads only files inside the run folder"


def convert_digits(out: Path, writer, splitter=None, limit: int = 24) -> dict:
    return convert(
        name="digits", source=DigitsSource(), labels=EmbeddedLabels(), splitter=splitter or NoSplit("train"),
        encoder=ImageEncoder("png"), writer=writer, executor=LocalExecutor(1), output_dir=str(out), limit=limit, progress=False,
    )


@pytest.fixture(scope="module")
def indexed_run(tmp_path_factory) -> Path:
    """TFRecord with DALI index files, three splits, a content scan and split balance in its summary."""
    out = tmp_path_factory.mktemp("indexed") / "run"
    convert_digits(out, TFRecordWriter(shard_size=6, features=SLIM, dali_index=True), StratifiedSplit(val=0.2, test=0.2, seed=0), limit=40)
    return out


@pytest.fixture
def run(indexed_run, tmp_path) -> Path:
    return Path(shutil.copytree(indexed_run, tmp_path / "run"))


def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def first_shard(run: Path, split: str | None = None) -> dict:
    return next(s for s in summary_of(run)["shards"] if split is None or s["split"] == split)


def move_out(run: Path, rel: str, outside: Path) -> Path:
    """Move a run's file out of the run and leave a symlink to it in its place (same bytes: only the link differs)."""
    target = outside / rel.replace("/", "_")
    outside.mkdir(exist_ok=True)
    shutil.move(run / rel, target)
    (run / rel).symlink_to(target)
    return target


# --- 1. readers never follow a symbolic link out of the run ----------------------------------------------


def test_a_symlinked_shard_is_refused_by_every_reader(run, tmp_path):
    shard = first_shard(run, "train")["path"]
    move_out(run, shard, tmp_path / "elsewhere")
    message = f"{run / shard}: {LINK}"
    with pytest.raises(InputError) as err:
        list(load.records(str(run)))
    assert str(err.value) == message
    with pytest.raises(InputError, match=LINK):
        list(load.payloads(str(run), "train"))
    with pytest.raises(InputError) as err:
        load.RecordDataset(str(run), "train", decode=False)[0]
    assert str(err.value) == message
    with pytest.raises(InputError, match=LINK):
        load.ray_tfrecord_args(str(run), "train", schema=False)
    with pytest.raises(InputError, match=LINK):
        load.dali_tfrecord_args(str(run), "train")
    assert call(inspect.main, run) == (1, [], f"error: {message}\n")
    code, lines, _ = call(verify.main, run)
    assert code == 1 and any(line.startswith(f"FAIL {shard}: a symlink to ") for line in lines)


def test_a_symlinked_dali_index_is_refused_by_random_access_dali_and_verify(run, tmp_path):
    index = first_shard(run, "train")["path"] + ".idx"
    move_out(run, index, tmp_path / "elsewhere")
    with pytest.raises(InputError) as err:
        load.RecordDataset(str(run), "train", decode=False)
    assert str(err.value) == f"{run / index}: {LINK}"
    with pytest.raises(InputError, match=LINK):
        load.dali_tfrecord_args(str(run), "train")
    code, lines, _ = call(verify.main, run)
    shard = index.removesuffix(".idx")
    assert code == 1 and f"FAIL {shard}: {index} (written beside it): {LINK}" in lines


def test_tensorflow_and_readbench_get_no_symlinked_shard(run, tmp_path, tf):
    from prep.tools import readbench

    shard = first_shard(run, "validation")["path"]
    move_out(run, shard, tmp_path / "elsewhere")
    with pytest.raises(InputError) as err:
        load.tf_dataset(str(run), "validation")
    assert str(err.value) == f"{run / shard}: {LINK}"
    with pytest.raises(InputError, match=LINK):
        readbench.measure(str(run), repeat=1)


@pytest.mark.parametrize("name", ["summary.json", "features.json"])
def test_a_symlinked_summary_or_metadata_file_is_refused(run, tmp_path, name):
    move_out(run, name, tmp_path / "elsewhere")
    if name == "summary.json":
        message = f"error: {run / name}: {LINK}\n"
        for main in (verify.main, inspect.main, report.main):
            assert call(main, run) == (1, [], message)
        with pytest.raises(InputError, match=LINK):
            load.load_summary(str(run))
        with pytest.raises(InputError, match=LINK):
            next(load.records(str(run)))
    else:
        code, lines, _ = call(verify.main, run)
        assert code == 1 and f"FAIL {name}: {LINK}" in lines


def test_a_shard_in_a_symlinked_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    convert_digits(run, OFRecordWriter(num_shards=2, features={"images": "encoded", "labels": "label:int32"}), limit=12)
    (tmp_path / "ext").mkdir()
    shutil.move(run / "train", tmp_path / "ext" / "train")
    (run / "train").symlink_to("../ext/train")
    message = f"{run / 'train/part-0'}: its folder train {LINK}"
    with pytest.raises(InputError) as err:
        list(load.records(str(run)))
    assert str(err.value) == message
    with pytest.raises(InputError) as err:
        load.RecordDataset(str(run), "train")
    assert str(err.value) == message
    code, lines, _ = call(verify.main, run)
    assert code == 1 and lines[0] == f"FAIL train/part-0: its folder train {LINK}"


def test_a_run_folder_named_through_a_symlink_is_read(indexed_run, tmp_path):
    (tmp_path / "alias").symlink_to(indexed_run)  # the user named it: a link there is the user's own choice
    assert len(list(load.records(str(tmp_path / "alias")))) == summary_of(indexed_run)["num_records"]
    assert call(verify.main, tmp_path / "alias")[0] == 0


def test_the_report_reads_its_samples_and_config_without_following_links(run, tmp_path):
    shard = first_shard(run, "test")["path"]
    move_out(run, shard, tmp_path / "elsewhere")
    (tmp_path / "config.yaml").write_text("max_pixels: 1\n")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").symlink_to(tmp_path / "config.yaml")
    assert report.run_settings(str(run))["max_pixels"] == report.encoders.DEFAULT_MAX_PIXELS  # the link is not read
    code, _, err = call(report.main, run, "-o", tmp_path / "page.html")
    assert (code, err) == (0, "")
    page = (tmp_path / "page.html").read_text()
    assert f"cannot read samples: {shard}: {run / shard}: {LINK}" in page


@HYPOTHESIS
@given(parts=st.lists(st.sampled_from(["a", "b", "..", ".", "", "/", "train"]), min_size=1, max_size=4))
def test_no_relative_path_leaves_the_run_folder(tmp_path_factory, parts):
    """open_in_run refuses every path that is not plain and inside; a plain one is opened below the run folder."""
    root = tmp_path_factory.mktemp("paths")
    (root / "run" / "a").mkdir(parents=True)
    (root / "run" / "a" / "b").write_bytes(b"inside")
    (root / "b").write_bytes(b"outside")
    (root / "run" / "train").symlink_to(root)
    rel = "/".join(parts)
    try:
        with load.open_in_run(str(root / "run"), rel) as f:
            data = f.read()
    except OSError:
        return
    assert data == b"inside" and rel == "a/b"


# --- 2. lengths and offsets are checked against the file's real size --------------------------------------


def test_an_index_and_summary_claiming_a_huge_record_are_checked_against_the_file(run):
    summary = summary_of(run)
    shard = next(s for s in summary["shards"] if s["split"] == "train")
    huge = 1 << 40
    lines = (run / (shard["path"] + ".idx")).read_text().splitlines()
    offset, _ = lines[-1].split()
    lines[-1] = f"{offset} {huge}"
    (run / (shard["path"] + ".idx")).write_text("\n".join(lines) + "\n")
    shard["bytes"] = int(offset) + huge
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(InputError) as err:
        load.RecordDataset(str(run), "train", decode=False)
    assert str(err.value) == f"{run / shard['path']}: is {(run / shard['path']).stat().st_size} bytes, summary.json says {shard['bytes']}; check the run with prep-verify"


def test_a_shard_cut_short_after_its_offsets_were_read_is_not_read_past_its_end(run):
    shard = first_shard(run, "train")
    data = load.RecordDataset(str(run), "train", decode=False)
    (run / shard["path"]).write_bytes((run / shard["path"]).read_bytes()[:100])
    with pytest.raises(InputError, match=r"record 4 at byte \d+: a frame of \d+ bytes does not fit the file of 100 bytes"):
        data[4]


def test_an_index_that_splits_records_elsewhere_is_one_error_line(run):
    """Offsets that tile the file but cut it where no frame starts: the frame's own length field says so."""
    shard = first_shard(run, "train")
    index = run / (shard["path"] + ".idx")
    pairs = [tuple(map(int, line.split())) for line in index.read_text().splitlines()]
    (a, sa), (b, sb) = pairs[0], pairs[1]
    pairs[0], pairs[1] = (a, sa + 8), (b + 8, sb - 8)
    index.write_text("".join(f"{o} {s}\n" for o, s in pairs))
    data = load.RecordDataset(str(run), "train", decode=False)
    with pytest.raises(InputError, match=r"record 0 at byte 0: its length field says \d+ bytes, its frame holds \d+"):
        data[0]


@HYPOTHESIS
@given(numbers=st.lists(st.integers(min_value=-(2**70), max_value=2**70), min_size=0, max_size=16))
def test_any_index_file_is_read_or_refused_in_one_line(run, numbers):
    shard = first_shard(run, "train")
    index = run / (shard["path"] + ".idx")
    original = index.read_bytes()
    try:
        index.write_text(" ".join(map(str, numbers)))
        try:
            data = load.RecordDataset(str(run), "train", decode=False)
        except InputError as err:
            assert "\n" not in str(err)
            return
        assert len(data) == summary_of(run)["splits"]["train"]["num_records"]
        data[0]
    finally:
        index.write_bytes(original)


def test_a_damaged_arrayrecord_chunk_is_one_error_naming_the_file(tmp_path):
    pytest.importorskip("array_record")
    from prep.writers import ArrayRecordWriter

    run = tmp_path / "run"
    convert_digits(run, ArrayRecordWriter(shard_size=12, features=SLIM))
    shard = first_shard(run)
    path = run / shard["path"]
    data = bytearray(path.read_bytes())
    for i in range(200, 260):  # inside the first chunks: their records no longer decompress
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    # in a fresh process: the array_record library cannot be used after a fork of a process that read with it
    script = textwrap.dedent(f"""
        from prep import load
        from prep.core.errors import PrepError
        problems = []
        try:
            dataset = load.RecordDataset({str(run)!r}, "train", decode=False)
            for i in range(len(dataset)):
                try:
                    dataset[i]
                except PrepError as err:
                    problems.append(str(err))
        except PrepError as err:
            problems.append(str(err))
        try:
            list(load.records({str(run)!r}))
        except PrepError as err:
            problems.append(str(err))
        print("\\n".join(problems))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    problems = proc.stdout.splitlines()
    assert problems and all(p.startswith(f"{path}: ") for p in problems), problems


# --- 3. prep-report renders what is valid of a tampered summary, or says why not in one line ----------------


def paths_of(value, prefix=()):
    """Every place in a JSON value: (path of keys and indexes)."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value[:8]):
            yield from paths_of(child, (*prefix, i))


SCALARS = st.one_of(
    st.none(), st.booleans(), st.just(float("nan")), st.just(float("inf")), st.just(-float("inf")),
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([10**300, -(10**300), 2**63, -1, 0, 1]),
    st.floats(allow_nan=False), st.text(max_size=6), st.sampled_from(["\u00b2", "-", "1e400", "3", "-7", "NaN"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4) | st.sampled_from(["0", "1", "\u00b2", "-1"]), inner, max_size=3), max_leaves=6)


def mutate(summary: dict, data) -> dict:
    for _ in range(data.draw(st.integers(1, 3))):
        places = [p for p in paths_of(summary) if p]
        place = data.draw(st.sampled_from(places))
        parent = summary
        for part in place[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            parent[data.draw(st.sampled_from(["\u00b2", "x", "-1", "99999999999999999999", ""]))] = parent.pop(place[-1])
        else:
            parent[place[-1]] = data.draw(VALUES)
    return summary


@pytest.fixture(scope="module")
def report_run(indexed_run, tmp_path_factory) -> tuple[Path, dict]:
    run = Path(shutil.copytree(indexed_run, tmp_path_factory.mktemp("report") / "run"))
    summary = summary_of(run)
    summary["duplicates"] = {"mode": "exact", "keep": "all", "dropped": 0, "conflicts": 0, "groups": [
        {"kind": "exact", "names": ["a.png", "b.png"], "labels": [1, 2], "splits": ["train", None], "kept": [True, False], "conflict": True}]}
    summary["skipped"] = [{"source": "c.png", "reason": "truncated"}]
    summary["unlabelled"] = {"count": 2, "examples": ["x.png", "y.png"]}
    summary["warnings"] = ["a note"]
    return run, summary


@HYPOTHESIS
@given(data=st.data())
def test_prep_report_never_raises_on_a_tampered_summary(report_run, data):
    run, original = report_run
    summary = mutate(json.loads(json.dumps(original)), data)
    (run / "summary.json").write_text(json.dumps(summary))
    for main, args in ((report.main, ["-o", run.parent / "page.html"]), (inspect.main, ["-n", "1"]), (verify.main, [])):
        code, _, err = call(main, run, *args)
        assert code in (0, 1)
        if code == 1 and main is not verify.main:
            assert err.startswith("error: ") and err.count("\n") == 1, err


def test_prep_report_draws_shards_and_sizes_whose_values_are_not_what_a_run_writes(run, tmp_path):
    summary = summary_of(run)
    summary["shards"][0]["class_counts"] = {"\u00b2": "many", "3": float("nan")}
    summary["shards"][1]["class_counts"] = [1, 2]
    summary["shards"][2]["class_counts"] = {"1": 10**300}
    summary["image_sizes"] = {"bins": [0, "x"], "height": [1, 2, 3], "width": {"0": 1}}
    summary["split_balance"] = {"\u00b2": {"train": {"target": 10**400 // 10**100, "achieved": float("nan"), "images": -3}}}
    summary["unlabelled"] = {"count": 3, "examples": 7}
    summary["duplicates"] = {"mode": "exact", "groups": [{"names": ["a"], "labels": [float("inf")]}]}
    (run / "summary.json").write_text(json.dumps(summary))
    code, lines, err = call(report.main, run, "-o", tmp_path / "page.html")
    assert (code, err) == (0, "")
    page = (tmp_path / "page.html").read_text()
    assert page.count("class counts not recorded") == 3 and "<h3>height</h3>" not in page


# --- 4. the rebuilt page embeds no file the run folder names ---------------------------------------------


@pytest.fixture
def flower_run(tmp_path, photos):
    from test_report import make_folder
    from test_report import run as run_flowers

    image_dir = tmp_path / "flowers"
    make_folder(image_dir, photos)
    (image_dir / "daisy" / "fine.png").write_bytes((image_dir / "daisy" / sorted(os.listdir(image_dir / "daisy"))[0]).read_bytes())
    out = tmp_path / "out"
    run_flowers(out, image_dir)
    (out / ".hydra").mkdir()
    (out / ".hydra" / "config.yaml").write_text(
        f"source:\n  _target_: prep.sources.ImageDirSource\n  image_dir: {image_dir}\n  extension: null\n"
        "  max_image_bytes: ${max_image_bytes}\nmax_pixels: 400000000\nmax_image_bytes: 268435456\n"
    )
    return out, image_dir


def embed_secret(out: Path, image_dir: Path, secret: Path) -> None:
    """A crafted run: its config names the folder of a private image, its summary that image as a skip."""
    config = (out / ".hydra" / "config.yaml").read_text().replace(str(image_dir), str(secret.parent))
    (out / ".hydra" / "config.yaml").write_text(config)
    summary = summary_of(out)
    summary["skipped"].append({"source": secret.name, "reason": "anything"})
    summary["duplicates"]["groups"].append({"kind": "exact", "names": [secret.name, f"../{secret.parent.name}/{secret.name}"], "labels": [0, 0], "conflict": False})
    (out / "summary.json").write_text(json.dumps(summary))


def test_prep_report_never_embeds_an_image_the_run_folder_names(flower_run, tmp_path, photos):
    from conftest import crop, jpeg_bytes

    out, image_dir = flower_run
    secret = tmp_path / "private" / "holiday.jpg"
    secret.parent.mkdir()
    secret.write_bytes(jpeg_bytes(crop(photos, 5)))
    embed_secret(out, image_dir, secret)
    samples = sum(min(report.SAMPLES_PER_SPLIT, s["num_records"]) for s in summary_of(out)["splits"].values())
    assert call(report.main, out)[0] == 0
    page = (out / "report.html").read_text()
    assert page.count("<img") == samples  # the sample grid, read from the shards; nothing from any folder
    assert "holiday.jpg" in page and page.count('<div class="ph">no preview</div>') >= 3


def test_prep_report_images_reads_thumbnails_only_inside_the_named_folder(flower_run, tmp_path, photos):
    from conftest import crop, jpeg_bytes

    out, image_dir = flower_run
    written = (out / "report.html").read_bytes()
    (out / "report.html").unlink()
    # an honest run, rebuilt with its source folder named: the page the run wrote, byte for byte
    assert call(report.main, out, "--images", image_dir) == (0, [f"wrote {out / 'report.html'} ({len(written):,} bytes)"], "")
    assert (out / "report.html").read_bytes() == written
    secret = tmp_path / "holiday.jpg"
    secret.write_bytes(jpeg_bytes(crop(photos, 5)))
    (image_dir / "daisy" / "link.jpg").symlink_to(secret)
    summary = summary_of(out)
    summary["skipped"] += [{"source": "../holiday.jpg", "reason": "x"}, {"source": str(secret), "reason": "x"},
                           {"source": "daisy/link.jpg", "reason": "x"}, {"source": "daisy/fine.png", "reason": "x"}]
    (out / "summary.json").write_text(json.dumps(summary))
    assert call(report.main, out, "--images", image_dir)[0] == 0
    rows = (out / "report.html").read_text().split("<h2>Skipped images")[1].split("<h2>")[0].split("<tr>")[2:]
    assert ["<img" in row for row in rows] == [False, False, False, False, False, True]  # only the file inside
    assert call(report.main, out, "--images", tmp_path / "nowhere") == (1, [], f"error: --images {tmp_path / 'nowhere'}: no such folder\n")


def test_the_config_may_lower_max_pixels_but_not_raise_it(flower_run):
    out, _ = flower_run
    config = out / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("max_pixels: 400000000", "max_pixels: 999999999999"))
    assert report.run_settings(str(out))["max_pixels"] == 999999999999
    config.write_text("a: &a [1, 2]\nb: [*a, *a]\nmax_pixels: 7\n")  # aliases: refused, the defaults used
    assert report.run_settings(str(out))["max_pixels"] == report.encoders.DEFAULT_MAX_PIXELS


# --- 5. prep-report takes the run's lock ------------------------------------------------------------------


def test_prep_report_refuses_while_a_run_holds_the_lock(run, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from prep.run.outputs import RunLock
            lock = RunLock({str(run)!r})
            lock.acquire()
            print("locked", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = (run / "report.html").read_bytes()
        message = f"error: {run} is in use by a prep run: try again when it has finished\n"
        assert call(report.main, run) == (1, [], message)
        assert call(report.main, run, "-o", tmp_path / "page.html") == (1, [], message)
        assert (run / "report.html").read_bytes() == before and not (tmp_path / "page.html").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert call(report.main, run)[0] == 0


def test_prep_report_makes_the_lock_file_only_in_a_run_folder_it_writes_into(run, tmp_path):
    (run / ".prep-lock").unlink()
    assert call(report.main, run, "-o", tmp_path / "page.html")[0] == 0
    assert not (run / ".prep-lock").exists()
    assert call(report.main, run)[0] == 0
    assert (run / ".prep-lock").is_file()
    (tmp_path / "empty").mkdir()
    assert call(report.main, tmp_path / "empty")[0] == 1 and not (tmp_path / "empty" / ".prep-lock").exists()


def test_a_lock_file_that_is_a_symlink_is_refused(run, tmp_path):
    (run / ".prep-lock").unlink()
    (tmp_path / "elsewhere").write_text("")
    (run / ".prep-lock").symlink_to(tmp_path / "elsewhere")
    assert call(report.main, run) == (1, [], f"error: {run / '.prep-lock'}: {LINK}\n")


# --- 6. a DALI index folder is neither the run folder, nor inside it, nor holding it -----------------------


@pytest.fixture
def plain_run(tmp_path) -> Path:
    out = tmp_path / "runs" / "plain"
    convert_digits(out, TFRecordWriter(shard_size=6, features=SLIM), limit=12)
    return out


@pytest.mark.parametrize("where", ["equal", "inside", "parent", "grandparent", "alias"])
def test_dali_index_dir_may_not_be_in_or_around_the_run(plain_run, where):
    pytest.importorskip("nvidia.dali")
    index_dir = {
        "equal": plain_run, "inside": plain_run / "idx", "parent": plain_run.parent, "grandparent": plain_run.parent.parent,
        "alias": plain_run.parent.parent / "alias",
    }[where]
    if where == "alias":
        index_dir.symlink_to(plain_run)
    before = sorted(p for p in plain_run.parent.parent.rglob("*"))
    with pytest.raises(ConfigError, match=r"(is the run folder|is inside the run folder|holds the run folder)"):
        load.dali_tfrecord_args(str(plain_run), "train", index_dir=str(index_dir))
    assert sorted(p for p in plain_run.parent.parent.rglob("*")) == before  # nothing written anywhere


def test_dali_index_files_are_written_only_after_every_shard_was_read(plain_run, tmp_path):
    pytest.importorskip("nvidia.dali")
    shards = summary_of(plain_run)["shards"]
    last = plain_run / shards[-1]["path"]
    last.write_bytes(last.read_bytes()[:-3])
    with pytest.raises(InputError):
        load.dali_tfrecord_args(str(plain_run), None, index_dir=str(tmp_path / "idx"))
    assert not (tmp_path / "idx").exists()


# --- more of the same: a wids index, DALI args' index files, and record lengths in OFRecord shards ---------


def test_an_ofrecord_frame_length_past_the_end_is_one_error_line(tmp_path):
    run = tmp_path / "run"
    convert_digits(run, OFRecordWriter(num_shards=1, features={"images": "encoded", "labels": "label:int32"}), limit=6)
    path = run / first_shard(run)["path"]
    data = bytearray(path.read_bytes())
    data[:8] = struct.pack("<q", 1 << 40)
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"record 0 at byte 0: runs past the end of the file"):
        load.RecordDataset(str(run), "train")
    with pytest.raises(PrepError):
        list(load.records(str(run)))


def test_math_nan_and_huge_numbers_in_split_balance_render(tmp_path):
    page = report.Page(
        {"dataset": "d", "format": "tfrecord", "num_records": 0, "shards": [], "splits": {"train": {"num_records": 0, "num_shards": 0, "classes": {}}},
         "split_balance": {"1": {"train": {"target": 10**400 // 10**50, "achieved": math.nan}}}},
        str(tmp_path), report.Thumbnails(),
    )
    assert "?" in page.balance() or "inf" in page.balance()


@pytest.mark.parametrize("url", ["pipe:cat /etc/hostname", "/etc/hostname", "../elsewhere.tar", "file:///etc/hostname", "d-test-000000.tar", "http://["])
def test_verify_fails_a_wids_index_naming_anything_but_the_run_s_shards(tmp_path, url):
    import hashlib

    from prep.writers import WebDatasetWriter

    run = tmp_path / "run"
    convert_digits(run, WebDatasetWriter(shard_size=6), limit=12)
    summary = summary_of(run)
    [entry] = summary["metadata_files"]
    index = json.loads((run / entry["path"]).read_text())
    index["shardlist"][0]["url"] = url
    data = (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()
    (run / entry["path"]).write_bytes(data)
    entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())  # a crafted run says so in its summary too
    (run / "summary.json").write_text(json.dumps(summary))
    code, lines, _ = call(verify.main, run)
    assert code == 1 and f"FAIL {entry['path']}: lists {url!r}, which is not a shard of summary.json (wids would open it)" in lines


def test_a_split_balance_of_many_classes_with_huge_numbers_renders(tmp_path):
    balance = {str(c): {"train": {"target": 0.5, "achieved": 0.25}} for c in range(report.MAX_BALANCE_ROWS + 5)}
    balance["3"]["train"] = {"target": 10**400, "achieved": 0.5}
    balance["4"]["train"] = {"target": math.nan, "achieved": True}
    page = report.Page(
        {"dataset": "d", "format": "tfrecord", "num_records": 0, "shards": [], "splits": {"train": {"num_records": 0, "num_shards": 0, "classes": {}}},
         "split_balance": balance},
        str(tmp_path), report.Thumbnails(),
    )
    assert "furthest from their targets" in page.balance()


# --- the second hostile pass ---------------------------------------------------------------------------------


def _crafted_length(run: Path, shard: str) -> None:
    """A TFRecord frame claiming 2**40 bytes with a valid length CRC appended to a shard, summary.json updated to
    match (as a crafted folder would be)."""
    import hashlib

    import google_crc32c

    length = struct.pack("<Q", 1 << 40)
    crc = google_crc32c.value(length)
    path = run / shard
    path.write_bytes(path.read_bytes() + length + struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF) + b"x" * 100)
    summary = json.loads((run / "summary.json").read_text())
    for entry in summary["shards"]:
        if entry["path"] == shard:
            entry["bytes"] = path.stat().st_size
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (run / "summary.json").write_text(json.dumps(summary))


@pytest.mark.slow
def test_a_crafted_frame_is_one_line_before_tensorflow_reads_it(tmp_path):
    """tf.data's reader ends the process (SIGSEGV) on a frame of 2**40 bytes: tf_dataset and prep-readbench check
    every frame first, in a subprocess so a crash would show as its exit status."""
    import subprocess
    import sys

    from conftest import REPO

    run = tmp_path / "run"
    convert(name="t", source=DigitsSource(), labels=EmbeddedLabels(), splitter=NoSplit("train"), encoder=ImageEncoder("png"),
            writer=TFRecordWriter(shard_size=10, features={"image": "encoded", "label": "label"}), executor=LocalExecutor(1),
            output_dir=str(run), limit=20, progress=False)
    shard = json.loads((run / "summary.json").read_text())["shards"][0]["path"]
    _crafted_length(run, shard)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = f"from prep.load import tf_dataset\ntry:\n    sum(1 for _ in tf_dataset({str(run)!r}, 'train'))\nexcept Exception as err:\n    print(type(err).__name__, err)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("InputError") and "runs past the end of the file" in proc.stdout, proc
    proc = subprocess.run([sys.executable, "-m", "prep.readbench", str(run)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "runs past the end of the file" in proc.stderr and "Traceback" not in proc.stderr, proc


def test_record_dataset_bounds_an_index_by_what_it_can_read(tmp_path):
    """num_records of 2**62 in summary.json: one line, not an OverflowError."""
    from prep.tools.random_access import RecordDataset

    run = tmp_path / "run"
    convert(name="t", source=DigitsSource(), labels=EmbeddedLabels(), splitter=NoSplit("train"), encoder=ImageEncoder("png"),
            writer=TFRecordWriter(shard_size=10, features={"image": "encoded", "label": "label"}, dali_index=True), executor=LocalExecutor(1),
            output_dir=str(run), limit=20, progress=False)
    summary = json.loads((run / "summary.json").read_text())
    summary["shards"][0]["num_records"] = 2**62
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(PrepError):
        RecordDataset(str(run), "train")[0]


def test_shard_paths_are_checked_for_libraries_that_open_them_by_name(tmp_path):
    """prep.load.shard_paths (what Grain, TensorFlow and Ray get) refuses a shard that is a link out of the run."""
    from prep import load

    run = tmp_path / "run"
    convert(name="t", source=DigitsSource(), labels=EmbeddedLabels(), splitter=NoSplit("train"), encoder=ImageEncoder("png"),
            writer=TFRecordWriter(shard_size=10, features={"image": "encoded", "label": "label"}), executor=LocalExecutor(1),
            output_dir=str(run), limit=20, progress=False)
    shard = json.loads((run / "summary.json").read_text())["shards"][0]["path"]
    outside = tmp_path / "outside.tfrecord"
    (run / shard).rename(outside)
    (run / shard).symlink_to(outside)
    with pytest.raises(InputError, match=LINK):
        load.shard_paths(str(run), "train")


def test_a_summary_with_more_splits_than_a_run_has_is_refused_by_every_tool(tmp_path):
    """100,000 splits (or a 50 MB dataset name) made prep-report run out of memory: such a summary is not a
    run's, and every tool says so in one line."""
    run = tmp_path / "run"
    convert(name="t", source=DigitsSource(), labels=EmbeddedLabels(), splitter=NoSplit("train"), encoder=ImageEncoder("png"),
            writer=TFRecordWriter(shard_size=10, features={"image": "encoded", "label": "label"}), executor=LocalExecutor(1),
            output_dir=str(run), limit=20, progress=False)
    honest = json.loads((run / "summary.json").read_text())
    for edit in ("splits", "dataset"):
        summary = json.loads(json.dumps(honest))
        if edit == "splits":
            summary["splits"].update({f"s{i}": {"num_records": 0, "num_shards": 0, "classes": {}} for i in range(1000)})
        else:
            summary["dataset"] = "x" * 100_000
        (run / "summary.json").write_text(json.dumps(summary))
        for tool in (report.main, inspect.main, verify.main):
            code, out, err = call(tool, run)
            assert code == 1 and err.count("\n") <= 1 and "Traceback" not in err, (tool, err)
        with pytest.raises(InputError):
            load.load_summary(str(run))
