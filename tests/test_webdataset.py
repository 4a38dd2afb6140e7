"""writer=webdataset: tar shards read back by webdataset, wids, Python's tarfile and GNU tar; the ustar and
.npy bytes prep writes itself; verify, inspect and prep.load on tar runs."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import crop, make_class_folders
from hypothesis import given, settings
from hypothesis import strategies as st

from prep import load
from prep.core.errors import ConfigError
from prep.encoders.image import ImageEncoder
from prep.encoders.passthrough import PassthroughEncoder
from prep.encoders.raw import RawEncoder
from prep.executors.local import LocalExecutor
from prep.formats import tar, wds
from prep.labels.subdirs import SubdirLabels
from prep.pipeline import convert
from prep.sources.image_dir import ImageDirSource
from prep.split import StratifiedSplit
from prep.tools import inspect, verify
from prep.writers import FORMATS, WebDatasetWriter

CLASSES = ("daisy", "rose", "tulip")
PER_CLASS = 4  # 12 images: 9 train in 3 shards of 3, 3 validation in 1


def convert_folder(root: Path, out: Path, encoder=None, workers: int = 1, **writer) -> dict:
    return convert(
        name="flowers", source=ImageDirSource(str(root)), labels=SubdirLabels(), splitter=StratifiedSplit(val=0.25, test=0, seed=0),
        encoder=encoder or PassthroughEncoder(), writer=WebDatasetWriter(**{"shard_size": 3, **writer}),
        executor=LocalExecutor(workers), output_dir=str(out), progress=False,
    )


def source_pixels(photos, filename: str) -> np.ndarray:
    """The RGB pixels make_class_folders wrote for `daisy/006.png`: crop number 6."""
    return crop(photos, int(filename.rsplit("/", 1)[1].split(".")[0]))


def shards_of(run: Path, summary: dict, split: str) -> list[str]:
    return [str(run / s["path"]) for s in summary["shards"] if s["split"] == split]


def call(main, *args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main([str(a) for a in args])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def jpeg_run(tmp_path_factory, photos):
    """A JPEG pass-through run: (source folder, run folder, summary)."""
    base = tmp_path_factory.mktemp("jpeg")
    make_class_folders(base / "images", photos, CLASSES, PER_CLASS, ".jpg")
    summary = convert_folder(base / "images", base / "run")
    return base / "images", base / "run", summary


# ---- bytes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,size", [("0000000000.jpg", 6835), ("0000000042.cls", 1), ("k.json", 0), ("a" * 96 + ".npy", 512), ("0000000001.png", 8**11 - 1)])
def test_header_is_byte_for_byte_what_tarfile_writes(name, size):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o644, 0, 0, "", ""
    assert tar.header(name, size) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    assert tar.parse_header(tar.header(name, size), "test") == (name, size)


def test_names_over_100_bytes_and_sizes_over_8_gib_are_refused():
    with pytest.raises(tar.TarError, match="1 to 100 bytes"):
        tar.header("a" * 97 + ".jpg", 1)
    with pytest.raises(tar.TarError, match="more than a ustar header holds"):
        tar.header("0.jpg", 8**11)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 3), (427, 640, 4), (12345, 1, 3)])
def test_npy_header_is_what_numpy_saves(shape):
    pixels = np.arange(np.prod(shape), dtype=np.uint64).astype(np.uint8).reshape(shape)
    saved = io.BytesIO()
    np.save(saved, pixels, allow_pickle=False)
    ours = wds.npy_header(*shape) + pixels.tobytes()
    assert ours == saved.getvalue()
    assert wds.npy_pixels(ours) == (shape, pixels.tobytes())


def test_a_cut_or_damaged_archive_names_member_and_byte():
    good = tar.member("0000000000.cls", b"3") + tar.member("0000000000.json", b"{}") + tar.END_OF_ARCHIVE
    assert [(o, n, d) for o, n, d in tar.read_members(io.BytesIO(good))] == [(0, "0000000000.cls", b"3"), (1024, "0000000000.json", b"{}")]
    with pytest.raises(tar.TarError, match=r"member 1 at byte 1024: .*checksum"):
        list(tar.read_members(io.BytesIO(good[:1024] + b"1" + good[1025:])))
    with pytest.raises(tar.TarError, match="without its end-of-archive blocks"):
        list(tar.read_members(io.BytesIO(good[:2048])))
    with pytest.raises(tar.TarError, match="cut short"):
        list(tar.read_members(io.BytesIO(good[:1537])))


def test_json_member_is_utf8_with_sorted_keys_and_keeps_undecodable_names():
    values = {"encoded": b"\xff\xd8\xff", "format": b"jpeg", "height": 2, "width": 3, "channels": 1, "label": 4, "text": "rosé".encode(), "filename": "rosé/1.jpg".encode()}
    chunks = wds.sample_chunks("0000000012", values)
    meta = wds.metadata(values)
    assert meta == '{"channels": 1, "class": "rosé", "filename": "rosé/1.jpg", "format": "jpeg", "height": 2, "width": 3}'.encode()
    record = wds.decode_sample(b"".join(chunks))
    assert record == {"image": ("bytes", [b"\xff\xd8\xff"]), "cls": ("int64", [4]), "json.channels": ("int64", [1]), "json.class": ("bytes", ["rosé".encode()]),
                      "json.filename": ("bytes", ["rosé/1.jpg".encode()]), "json.format": ("bytes", [b"jpeg"]), "json.height": ("int64", [2]), "json.width": ("int64", [3])}  # fmt: skip
    latin1 = {**values, "filename": b"caf\xe9/1.jpg"}  # a Linux file name that is not UTF-8: its bytes kept
    assert b'"filename": "caf\\udce9/1.jpg"' in wds.metadata(latin1)
    assert wds.decode_sample(b"".join(wds.sample_chunks("0000000012", latin1)))["json.filename"] == ("bytes", [b"caf\xe9/1.jpg"])


def test_a_split_whose_images_were_all_skipped_gets_an_index_without_shards():
    writer = WebDatasetWriter(shard_size=2)
    assert writer.shard_sizes(3, "train") == [3] and writer.shard_sizes(2, "test") == [2]
    paths = [writer.shard_path("d", "train", 0, 1), writer.shard_path("d", "test", 0, 1)]
    assert writer.metadata_paths("d", ["train", "test"], None) == ["d-train.wids.json", "d-test.wids.json"]
    summary = {"dataset": "d", "splits": {"train": {"num_records": 3}, "test": {"num_records": 0}, "validation": {"num_records": 0}},
               "shards": [{"path": paths[0], "split": "train", "num_records": 3, "bytes": 5120}]}  # fmt: skip
    files = writer.metadata_files(summary, None)
    assert sorted(files) == ["d-test.wids.json", "d-train.wids.json"]  # validation had no images: never planned
    assert json.loads(files["d-test.wids.json"]) == {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": "d-test", "shardlist": []}
    assert json.loads(files["d-train.wids.json"])["shardlist"] == [{"url": "d-train-000000.tar", "nsamples": 3, "filesize": 5120}]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 2047))
def test_any_bytes_read_as_samples_give_a_tar_error_or_samples(data, cut):
    """A damaged or foreign file never raises anything but TarError (one clear line) from the readers."""
    good = b"".join(wds.sample_chunks("0000000007", {
        "encoded": b"\xff\xd8\xff" + data[:50], "format": b"jpeg", "height": 2, "width": 3, "channels": 3, "label": 1,
        "text": "rosé".encode(), "filename": b"r/1.jpg",
    })) + tar.END_OF_ARCHIVE  # fmt: skip
    for stream in (data, good[:cut] + data, good[:cut] + data[:1] + good[cut + 1 :]):
        try:
            for _, payload in wds.read_samples(io.BytesIO(stream)):
                wds.decode_sample(payload)
        except tar.TarError:
            pass


# ---- a JPEG pass-through run, read by the real consumers ---------------------------------------------------


def test_webdataset_decodes_every_sample_as_the_source_images(jpeg_run, photos):
    webdataset = pytest.importorskip("webdataset")
    from PIL import Image

    images, run, summary = jpeg_run
    label_map = summary["label_map"]
    seen = set()
    for split, info in summary["splits"].items():
        samples = list(webdataset.WebDataset(shards_of(run, summary, split), shardshuffle=False).decode("rgb8"))
        raw = list(webdataset.WebDataset(shards_of(run, summary, split), shardshuffle=False))
        assert len(samples) == len(raw) == info["num_records"]
        assert sum(int(s["cls"]) == 0 for s in samples) == info["classes"]["0"]
        for sample, undecoded in zip(samples, raw):
            meta = sample["json"]
            filename = meta["filename"]
            source = (images / filename).read_bytes()
            assert undecoded["jpg"] == source  # pass-through: the bytes untouched, under .jpg
            assert np.array_equal(sample["jpg"], np.asarray(Image.open(io.BytesIO(source)).convert("RGB")))
            assert sample["jpg"].shape == (meta["height"], meta["width"], 3)
            assert sample["cls"] == label_map[meta["class"]] == label_map[filename.split("/")[0]]
            assert meta == {"filename": filename, "class": filename.split("/")[0], "format": "jpeg", "height": source_pixels(photos, filename).shape[0],
                            "width": source_pixels(photos, filename).shape[1], "channels": 3}  # fmt: skip
            assert undecoded["json"] == json.dumps(meta, sort_keys=True, ensure_ascii=False).encode()
            seen.add(filename)
    assert len(seen) == len(CLASSES) * PER_CLASS == summary["num_records"]


def test_wids_random_access_equals_sequential_reading(jpeg_run, tmp_path):
    webdataset = pytest.importorskip("webdataset")
    wids = pytest.importorskip("wids")
    _, run, summary = jpeg_run
    for split, info in summary["splits"].items():
        index = run / f"flowers-{split}.wids.json"
        assert json.loads(index.read_text())["__kind__"] == "wids-shard-index-v1"
        dataset = wids.ShardListDataset(str(index), cache_dir=str(tmp_path / split), transformations=[])
        sequential = list(webdataset.WebDataset(shards_of(run, summary, split), shardshuffle=False))
        assert len(dataset) == len(sequential) == info["num_records"]
        for i in reversed(range(len(dataset))):  # backwards: every access crosses the shards the other way
            sample = dataset[i]
            assert sample["__key__"] == sequential[i]["__key__"]
            assert {k: sample[k].read() for k in (".jpg", ".cls", ".json")} == {f".{k}": sequential[i][k] for k in ("jpg", "cls", "json")}


def test_tarfile_and_gnu_tar_list_members_with_mtime_0_and_sorted_dot_free_keys(jpeg_run):
    _, run, summary = jpeg_run
    for split in summary["splits"]:
        keys = []
        for path in shards_of(run, summary, split):
            with tarfile.open(path, format=tarfile.USTAR_FORMAT) as archive:
                members = archive.getmembers()
            assert all((m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode, m.isreg()) == (0, 0, 0, "", "", 0o644, True) for m in members)
            names = [m.name for m in members]
            assert [n.split(".", 1)[1] for n in names] == ["jpg", "cls", "json"] * (len(names) // 3)
            keys += [n.split(".", 1)[0] for n in names[::3]]
            listing = subprocess.run(["tar", "tvf", path], capture_output=True, text=True, check=True).stdout.splitlines()
            assert [line.split()[-1] for line in listing] == names
            assert all(line.split()[1] == "0/0" and " 1970-01-01 00:00 " in line and line.startswith("-rw-r--r--") for line in listing)
            assert subprocess.run(["tar", "tf", path], capture_output=True).stderr == b""
        # the record's position in its split, zero-padded: sorted, unique, digits only
        assert keys == [f"{i:010d}" for i in range(summary["splits"][split]["num_records"])]


def test_summary_counts_are_exact_and_verify_passes(jpeg_run):
    _, run, summary = jpeg_run
    assert summary["format"] == "webdataset"
    assert {s: (v["num_records"], v["num_shards"]) for s, v in summary["splits"].items()} == {"train": (9, 3), "validation": (3, 1)}
    for shard in summary["shards"]:
        data = (run / shard["path"]).read_bytes()
        with tarfile.open(run / shard["path"]) as archive:
            assert len(archive.getnames()) == 3 * shard["num_records"]
        assert (len(data), hashlib.sha256(data).hexdigest()) == (shard["bytes"], shard["sha256"])
        assert data.endswith(bytes(1024)) and len(data) % 512 == 0
    assert summary["feature_fields"] == {"image": "encoded", "cls": "label", "json.filename": "filename", "json.class": "text",
                                         "json.height": "height", "json.width": "width", "json.channels": "channels", "json.format": "format"}  # fmt: skip
    assert [m["path"] for m in summary["metadata_files"]] == ["flowers-train.wids.json", "flowers-validation.wids.json"]
    code, out = call(verify.main, run, "--decode")
    assert code == 0, out
    assert "ok   split train: 9 records in 3 shard(s), 3 classes, as read" in out


@pytest.mark.parametrize("where,problem", [(700, "sha256 differs"), (130, "checksum does not match"), (-700, "not a ustar header")])
def test_verify_fails_on_a_tar_with_a_changed_byte(jpeg_run, tmp_path, where, problem):
    _, run, summary = jpeg_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shard = copy / summary["shards"][1]["path"]
    data = bytearray(shard.read_bytes())
    data[where] ^= 0x01
    shard.write_bytes(bytes(data))
    code, out = call(verify.main, copy)
    assert code == 1
    assert f"FAIL {summary['shards'][1]['path']}: " in out and problem in out


def test_a_stray_tar_is_found_by_the_folder_scan(jpeg_run, tmp_path):
    _, run, summary = jpeg_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.copy(copy / summary["shards"][0]["path"], copy / "old-copy.bin")
    shutil.copy(copy / summary["shards"][0]["path"], copy / "flowers-train-000007.tar")
    code, out = call(verify.main, copy)
    assert code == 1
    assert "FAIL old-copy.bin: not in summary.json, but holds webdataset records" in out
    assert "FAIL flowers-train-000007.tar: not in summary.json, but named like a shard" in out


def test_load_records_and_inspect_read_the_samples(jpeg_run):
    images, run, summary = jpeg_run
    records = list(load.records(str(run), "validation"))
    assert len(records) == 3
    for record in records:
        assert record["image"] == (images / record["json.filename"].decode()).read_bytes()
        assert record["cls"] == summary["label_map"][record["json.class"].decode()]
    code, out = call(inspect.main, run / summary["shards"][0]["path"], "-n", "1")
    assert code == 0 and "flowers: 12 webdataset records in 4 shards" in out and "image: jpeg " in out
    assert load.sniff_records(str(run / summary["shards"][0]["path"])) == ("webdataset", None)


# ---- PNG and raw runs, determinism ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory, photos) -> Path:
    root = tmp_path_factory.mktemp("png") / "images"
    make_class_folders(root, photos, CLASSES, PER_CLASS, ".png")
    return root


def test_png_run_holds_png_members_of_the_source_pixels(png_folder, tmp_path, photos):
    webdataset = pytest.importorskip("webdataset")
    summary = convert_folder(png_folder, tmp_path / "run", encoder=ImageEncoder("png"))
    assert summary["image_formats"] == {"png": 12}
    samples = list(webdataset.WebDataset([str(tmp_path / "run" / s["path"]) for s in summary["shards"]], shardshuffle=False).decode("rgb8"))
    assert len(samples) == 12
    for sample in samples:
        assert sorted(k for k in sample if not k.startswith("__")) == ["cls", "json", "png"]
        assert np.array_equal(sample["png"], source_pixels(photos, sample["json"]["filename"]))


def test_raw_run_holds_npy_members_numpy_loads(png_folder, tmp_path, photos):
    webdataset = pytest.importorskip("webdataset")
    run = tmp_path / "run"
    summary = convert_folder(png_folder, run, encoder=RawEncoder())
    with tarfile.open(run / summary["shards"][0]["path"]) as archive:
        first = archive.getnames()[0]
        assert first == "0000000000.npy"
        array = np.load(io.BytesIO(archive.extractfile(first).read()), allow_pickle=False)
    first_record = next(iter(load.records(str(run), "train")))
    assert np.array_equal(array, source_pixels(photos, first_record["json.filename"].decode()))
    samples = list(webdataset.WebDataset([str(run / s["path"]) for s in summary["shards"]], shardshuffle=False).decode("rgb8"))
    assert all(np.array_equal(s["npy"], source_pixels(photos, s["json"]["filename"])) for s in samples) and len(samples) == 12
    assert [r["image"] for r in load.records(str(run))] == [s["npy"].tobytes() for s in samples]
    assert call(verify.main, run, "--decode")[0] == 0


def test_two_runs_and_worker_counts_give_the_same_bytes(png_folder, tmp_path):
    one = convert_folder(png_folder, tmp_path / "one", encoder=ImageEncoder("png"), workers=1)
    two = convert_folder(png_folder, tmp_path / "two", encoder=ImageEncoder("png"), workers=2)
    again = convert_folder(png_folder, tmp_path / "again", encoder=ImageEncoder("png"), workers=1, num_shards=2, shard_size=None)
    assert [(s["path"], s["sha256"]) for s in one["shards"]] == [(s["path"], s["sha256"]) for s in two["shards"]]
    assert one["metadata_files"] == two["metadata_files"]
    for name in ("flowers-train.wids.json", "flowers-validation.wids.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    # Other shard boundaries, the same samples: keys are positions in the split, not in the shard.
    assert [r for r in load.payloads(str(tmp_path / "one"))] == [r for r in load.payloads(str(tmp_path / "again"))]


@pytest.mark.parametrize("pattern,urls", [
    ("{split}/part-{index:03d}.tar", ["train/part-000.tar", "train/part-001.tar", "train/part-002.tar"]),
    ("{split}:{index}.tar", ["./train:0.tar", "./train:1.tar", "./train:2.tar"]),  # "train:" would read as a url scheme
])  # fmt: skip
def test_shard_urls_are_relative_to_the_index_and_wids_reads_them(png_folder, tmp_path, pattern, urls):
    wids = pytest.importorskip("wids")
    run = tmp_path / "run"
    summary = convert_folder(png_folder, run, encoder=ImageEncoder("png"), pattern=pattern)
    index = json.loads((run / "flowers-train.wids.json").read_text())
    assert [s["url"] for s in index["shardlist"]] == urls
    assert [(s["nsamples"], s["filesize"]) for s in index["shardlist"]] == [(s["num_records"], s["bytes"]) for s in summary["shards"][:3]]
    dataset = wids.ShardListDataset(str(run / "flowers-train.wids.json"), cache_dir=str(tmp_path / "cache"), transformations=[])
    assert [dataset[i][".cls"].read() for i in range(len(dataset))] == [str(r["cls"]).encode() for r in load.records(str(run), "train")]


def test_names_wids_would_misread_are_refused_before_writing(png_folder, tmp_path):
    with pytest.raises(ConfigError, match=r"holds \?.*wids_index=false"):
        convert_folder(png_folder, tmp_path / "run", pattern="{dataset}-{split}?{index}.tar")
    assert not (tmp_path / "run").exists()
    summary = convert_folder(png_folder, tmp_path / "run", pattern="{dataset}-{split}#{index}.tar", wids_index=False)
    assert summary["metadata_files"] == [] and summary["num_records"] == 12


def test_registered_as_a_format():
    assert FORMATS["webdataset"] is WebDatasetWriter


@pytest.mark.slow
def test_cli_run_with_verify_imports_no_reader_library(tmp_path, photos):
    """`prep writer=webdataset verify=true` as a user runs it: the tars are written by prep alone (no tarfile,
    webdataset, torch or TensorFlow imported), verified before summary.json, and prep-verify agrees."""
    from conftest import run_prep

    make_class_folders(tmp_path / "images", photos, CLASSES, PER_CLASS, ".jpg")
    run = tmp_path / "run"
    watched = ("tarfile", "webdataset", "wids", "torch", "tensorflow", "jax")
    code = (
        "import atexit, runpy, sys\n"
        f"atexit.register(lambda: print('IMPORTED', sorted(m for m in {watched!r} if m in sys.modules), file=sys.stderr))\n"
        f"sys.argv = ['prep', 'dataset=images', 'source.image_dir={tmp_path / 'images'}', 'labels=subdirs', 'writer=webdataset',\n"
        f"            'writer.num_shards=2', 'writer.shard_size=null', 'verify=true', 'progress=false', 'hydra.run.dir={run}']\n"
        "runpy.run_module('prep', run_name='__main__', alter_sys=True)\n"
    )
    proc = run_prep("-c", code, module=None)
    assert "IMPORTED []" in proc.stderr, proc.stderr
    assert sorted(p.name for p in run.glob("*.tar")) == ["images-train-000000.tar", "images-train-000001.tar"]
    assert json.loads((run / "images-train.wids.json").read_text())["shardlist"][1] == {
        "url": "images-train-000001.tar", "nsamples": 6, "filesize": (run / "images-train-000001.tar").stat().st_size,
    }
    assert run_prep("-m", "prep.verify", str(run), "--decode", module=None).stdout.endswith("2 of 2 shards ok\n")
