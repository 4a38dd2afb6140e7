"""prep.load.RecordDataset: random access equals sequential reading (prep.load.records) for TFRecord (with and
without DALI index files), OFRecord and ArrayRecord runs; pixels equal the source images; it crosses process
boundaries (pickle, torch DataLoader workers, Grain workers, multiprocessing spawn)."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil

import cv2
import numpy as np
import pytest
from conftest import crop, png_bytes
from reader_runs import ONEFLOW, SLIM, make_folder, make_run

from prep import load
from prep.core.errors import ConfigError, EncodeError, InputError
from prep.encoders.raw import RawEncoder
from prep.runfiles import summary as summaries
from prep.split import NoSplit
from prep.writers import ArrayRecordWriter, OFRecordWriter, TFRecordWriter


@pytest.fixture(scope="module")
def flowers(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("flowers")
    pixels = make_folder(root / "images", photos)
    runs = {
        "tfrecord": make_run(root / "tfrecord", root / "images", TFRecordWriter(shard_size=4, features=SLIM)),
        "tfrecord+idx": make_run(root / "idx", root / "images", TFRecordWriter(shard_size=4, features=SLIM, dali_index=True)),
        "ofrecord": make_run(root / "ofrecord", root / "images", OFRecordWriter(num_shards=3, features=ONEFLOW)),
        "arrayrecord": make_run(root / "arrayrecord", root / "images", ArrayRecordWriter(shard_size=4, features=SLIM)),
    }
    return pixels, runs


def expected(record: dict, image_key: str) -> dict:
    """What RecordDataset gives for a record prep.load.records gives: bytes as text where they are UTF-8."""
    out = {}
    for key, value in record.items():
        if isinstance(value, bytes) and key != image_key:
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        out[key] = value
    return out


@pytest.mark.parametrize("kind", ["tfrecord", "tfrecord+idx", "ofrecord", "arrayrecord"])
def test_random_access_equals_sequential_reading(flowers, kind):
    pixels, runs = flowers
    run = runs[kind]
    image_key = "images" if kind == "ofrecord" else "image/encoded"
    name_key = "names" if kind == "ofrecord" else "image/filename"
    seen = 0
    for split in ("train", "validation", "test"):
        sequential = list(load.records(run, split))
        raw = load.RecordDataset(run, split, decode=False)
        decoded = load.RecordDataset(run, split)
        assert len(raw) == len(sequential) == summaries.load(run)["splits"][split]["num_records"]
        assert [raw[i] for i in range(len(raw))] == [expected(r, image_key) for r in sequential]
        # shuffled order, negative indices, numpy integers: the same records
        order = np.random.default_rng(1).permutation(len(raw))
        assert [raw[i] for i in order] == [expected(sequential[i], image_key) for i in order]
        assert raw[-1] == raw[len(raw) - 1] and raw[np.int64(-len(raw))] == raw[0]
        assert raw[1:3] == [raw[1], raw[2]]
        for i in range(len(decoded)):
            record = decoded[i]
            image = record[image_key]
            assert image.dtype == np.uint8 and image.flags.writeable
            assert np.array_equal(image, pixels[record[name_key]]), record[name_key]
        seen += len(raw)
        for bad in (len(raw), -len(raw) - 1):
            with pytest.raises(IndexError):
                raw[bad]
    assert seen == len(pixels)


def test_types_of_values_and_gray_and_alpha(flowers):
    pixels, runs = flowers
    records = [r for split in ("train", "validation", "test") for r in load.RecordDataset(runs["tfrecord"], split)]
    assert len(records) == len(pixels)
    record = records[0]
    assert isinstance(record["image/class/label"], int) and isinstance(record["image/height"], int)
    assert isinstance(record["image/class/text"], str) and record["image/format"] == "png"
    assert all(r["image/class/text"] == r["image/filename"].split("/")[0] for r in records)
    shapes = {r["image/filename"]: r["image/encoded"].shape for r in records}
    assert shapes["rose/004.png"][2] == 1 and shapes["rose/007.png"][2] == 4  # gray HxWx1, RGBA, as tf.io.decode_image
    assert all(shapes[r["image/filename"]] == (r["image/height"], r["image/width"], r["image/channels"]) for r in records)


def test_the_dali_index_is_used_instead_of_a_scan(flowers, monkeypatch):
    from prep.tools import random_access

    _, runs = flowers

    def no_scan(*args, **kwargs):
        raise AssertionError("scanned a shard that has an index file")

    monkeypatch.setattr(random_access, "frame_offsets", no_scan)
    assert len(load.RecordDataset(runs["tfrecord+idx"], "train")) == 21
    with pytest.raises(AssertionError, match="scanned"):
        load.RecordDataset(runs["tfrecord"], "train")


def test_raw_pixels_are_reshaped(tmp_path, photos):
    pixels = make_folder(tmp_path / "images", photos, count=9)
    features = {"image": "encoded", "label": "label", "height": "height", "width": "width", "channels": "channels", "name": "filename"}
    run = make_run(tmp_path / "raw", tmp_path / "images", TFRecordWriter(shard_size=4, features=features), encoder=RawEncoder(), splitter=NoSplit())
    dataset = load.RecordDataset(run, "train")
    assert len(dataset) == 9
    for i in range(9):
        record = dataset[i]
        source = pixels[record["name"]]
        assert np.array_equal(record["image"], source[:, :, :3] if source.shape[2] == 4 else source)  # raw drops alpha
    with pytest.raises(EncodeError, match="over max_pixels"):
        load.RecordDataset(run, "train", max_pixels=100)[0]


def test_max_pixels_is_checked_before_decoding(flowers):
    _, runs = flowers
    with pytest.raises(EncodeError, match="over max_pixels=100"):
        load.RecordDataset(runs["ofrecord"], "train", max_pixels=100)[0]
    assert isinstance(load.RecordDataset(runs["ofrecord"], "train", decode=False, max_pixels=100)[0]["images"], bytes)


def test_damaged_shards_and_indexes_are_named(tmp_path, flowers):
    _, runs = flowers
    run = tmp_path / "copy"
    shutil.copytree(runs["tfrecord+idx"], run)
    summary = summaries.load(str(run))
    shard = next(s for s in summary["shards"] if s["split"] == "train")
    data = bytearray((run / shard["path"]).read_bytes())
    data[100] ^= 1  # inside the first record's payload
    (run / shard["path"]).write_bytes(bytes(data))
    dataset = load.RecordDataset(str(run), "train", decode=False)
    with pytest.raises(InputError, match="record 0 at byte 0: payload CRC mismatch"):
        dataset[0]
    assert dataset[1]["image/filename"]  # the other records still read
    (run / (shard["path"] + ".idx")).write_text("0 10\n")
    with pytest.raises(InputError, match=r"\.idx: does not match its shard"):
        load.RecordDataset(str(run), "train")
    scan = tmp_path / "scan"
    shutil.copytree(runs["tfrecord"], scan)
    shard = next(s for s in summaries.load(str(scan))["shards"] if s["split"] == "train")
    data = (scan / shard["path"]).read_bytes()
    (scan / shard["path"]).write_bytes(data[:-3])
    with pytest.raises(InputError, match=f"is {len(data) - 3} bytes, summary.json says {len(data)}"):
        load.RecordDataset(str(scan), "train")
    data = bytearray(data)
    data[4] ^= 1  # the first length field: its CRC no longer holds
    (scan / shard["path"]).write_bytes(bytes(data))
    with pytest.raises(InputError, match="record 0 at byte 0: length CRC mismatch"):
        load.RecordDataset(str(scan), "train")


def test_runs_random_access_cannot_read_are_refused_clearly(tmp_path, photos, monkeypatch):
    make_folder(tmp_path / "images", photos, count=6)
    gz = make_run(tmp_path / "gz", tmp_path / "images", TFRecordWriter(shard_size=4, features=SLIM, compression="gzip"), splitter=NoSplit())
    with pytest.raises(ConfigError, match="gzip-compressed.*writer.compression=null"):
        load.RecordDataset(gz, "train")
    with pytest.raises(ConfigError, match="no split 'validation'"):
        load.RecordDataset(gz, "validation")
    # A webdataset run (another writer's tar shards): pointed at wids
    monkeypatch.setitem(summaries.KINDS, "webdataset", ("bytes", "int64"))
    path = tmp_path / "gz" / "summary.json"
    summary = json.loads(path.read_text())
    summary.update(format="webdataset", compression=None)
    path.write_text(json.dumps(summary))
    with pytest.raises(ConfigError, match=r"webdataset run .*wids.ShardListDataset"):
        load.RecordDataset(gz, "train")


def test_pickle_carries_offsets_not_open_files(flowers):
    _, runs = flowers
    dataset = load.RecordDataset(runs["tfrecord"], "train")
    first = dataset[0]
    assert dataset._files  # a shard is open now
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._files == {} and dataset._files
    assert [np.array_equal(a, b) for a, b in zip(copy._offsets, dataset._offsets)] == [True] * len(dataset._offsets)
    again = copy[0]
    assert again.keys() == first.keys() and np.array_equal(again["image/encoded"], first["image/encoded"])
    assert len(pickle.dumps(dataset)) < 4000  # paths and offsets only


def _read_all(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def _record_at(args):
    dataset, i = args
    return dataset[i]


def test_multiprocessing_spawn(flowers):
    _, runs = flowers
    dataset = load.RecordDataset(runs["tfrecord+idx"], "train", decode=False)
    dataset[0]  # open files in the parent: they must not travel
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        got = pool.map(_record_at, [(dataset, i) for i in range(len(dataset))])
    assert got == _read_all(dataset)


@pytest.fixture(scope="module")
def same_size_run(tmp_path_factory, photos):
    """Images of one size (so a default collate can stack them), a TFRecord run of one split."""
    root = tmp_path_factory.mktemp("square")
    make_folder(root / "images", photos, count=22, size=40)
    return make_run(root / "run", root / "images", TFRecordWriter(shard_size=5, features=SLIM), splitter=NoSplit())


def test_torch_dataloader_with_two_workers(same_size_run):
    torch = pytest.importorskip("torch")
    dataset = load.RecordDataset(same_size_run, "train")
    sequential = [expected(r, "image/encoded") for r in load.records(same_size_run, "train")]
    dataset[0]  # a parent that already opened shards forks its workers
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(len(b["image/class/label"]) for b in batches) == len(sequential) == 22
    images = torch.cat([b["image/encoded"] for b in batches]).numpy()
    assert images.shape == (22, 40, 40, 3)
    for image, record in zip(images, sequential):
        assert np.array_equal(image, cv2.imdecode(np.frombuffer(record["image/encoded"], np.uint8), cv2.IMREAD_COLOR_RGB))
    assert torch.cat([b["image/class/label"] for b in batches]).tolist() == [r["image/class/label"] for r in sequential]
    assert [n for b in batches for n in b["image/filename"]] == [r["image/filename"] for r in sequential]


def test_grain_dataloader_with_workers(same_size_run):
    grain = pytest.importorskip("grain.python")
    dataset = load.RecordDataset(same_size_run, "train", decode=False)
    sampler = grain.IndexSampler(num_records=len(dataset), shard_options=grain.NoSharding(), shuffle=True, num_epochs=1, seed=3)
    loader = grain.DataLoader(data_source=dataset, sampler=sampler, worker_count=2)
    got = list(loader)
    assert len(got) == 22
    by_name = {r["image/filename"]: r for r in _read_all(dataset)}
    assert sorted(r["image/filename"] for r in got) == sorted(by_name)
    assert all(r == by_name[r["image/filename"]] for r in got)
    assert [r["image/filename"] for r in got] != sorted(by_name)  # shuffled by Grain, read at random


def test_grain_map_dataset_source(same_size_run):
    import grain

    dataset = load.RecordDataset(same_size_run, "train")
    mapped = grain.MapDataset.source(dataset).map(lambda r: r["image/encoded"].shape)
    assert len(mapped) == 22 and mapped[0] == (40, 40, 3) and mapped[-1] == (40, 40, 3)


def test_arrayrecord_run_equals_the_tfrecord_run_and_crosses_processes(flowers):
    """writer=arrayrecord holds the TFRecord writer's records: RecordDataset gives the same dicts, in any process."""
    _, runs = flowers
    for split in ("train", "test"):
        tf_run, ar_run = load.RecordDataset(runs["tfrecord"], split), load.RecordDataset(runs["arrayrecord"], split)
        assert len(ar_run) == len(tf_run)
        for i in [*range(len(tf_run)), -1]:
            a, b = ar_run[i], tf_run[i]
            assert a.keys() == b.keys() and np.array_equal(a["image/encoded"], b["image/encoded"])
            assert {k: v for k, v in a.items() if k != "image/encoded"} == {k: v for k, v in b.items() if k != "image/encoded"}
    ar_run = load.RecordDataset(runs["arrayrecord"], "train", decode=False)
    ar_run[0]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.map(_record_at, [(ar_run, i) for i in (0, 5, -1)]) == [ar_run[0], ar_run[5], ar_run[-1]]


@pytest.mark.slow
def test_decoded_images_equal_tensorflows_decode_image(photos, tf):
    """RecordDataset decodes as tf.io.decode_image(channels=0) does: shape, channel order and values."""
    import io

    from PIL import Image

    from prep.tools.random_access import decode_image

    rgb = crop(photos, 3)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    alpha = (np.arange(gray.size) % 251).reshape(gray.shape).astype(np.uint8)

    def pil_png(array, mode):
        out = io.BytesIO()
        Image.fromarray(array, mode).save(out, format="PNG")
        return out.getvalue()

    wide = (rgb.astype(np.uint16) * 257 + np.arange(rgb.size).reshape(rgb.shape) % 200).astype(np.uint16)
    samples = {
        "rgb png": png_bytes(rgb),
        "gray png": png_bytes(gray),
        "rgba png": pil_png(np.dstack([rgb, alpha]), "RGBA"),
        "gray+alpha png": pil_png(np.dstack([gray, alpha]), "LA"),
        "16-bit png": cv2.imencode(".png", cv2.cvtColor(wide, cv2.COLOR_RGB2BGR))[1].tobytes(),
        "bmp": cv2.imencode(".bmp", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes(),
    }
    for name, data in samples.items():
        want = tf.io.decode_image(data, channels=0, expand_animations=False).numpy()
        got = decode_image(data)
        assert got.shape == want.shape and got.dtype == want.dtype == np.uint8, name
        assert np.array_equal(got, want), name
    # JPEG: the same shape; values within a few levels (TensorFlow's default IDCT is libjpeg's fast integer one)
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    want = tf.io.decode_image(jpeg, channels=0).numpy().astype(int)
    got = decode_image(jpeg).astype(int)
    assert got.shape == want.shape and np.abs(got - want).max() <= 8 and np.abs(got - want).mean() < 1.5


def test_text_that_is_not_utf8_stays_bytes_and_floats_are_floats(tmp_path, photos):
    images = tmp_path / "images"
    make_folder(images, photos, count=6)
    odd = b"daisy/caf\xe9.png"  # a Latin-1 file name: Linux allows any bytes
    (images / os.fsdecode(odd)).write_bytes(png_bytes(crop(photos, 11)))
    features = {"image": "encoded", "label": "label:float", "name": "filename", "class": "text"}
    run = make_run(tmp_path / "run", images, TFRecordWriter(shard_size=4, features=features), splitter=NoSplit())
    records = list(load.RecordDataset(run, "train", decode=False))
    assert len(records) == 7
    names = [r["name"] for r in records]
    assert odd[len(b"daisy/"):] in [n.split(b"/")[-1] for n in names if isinstance(n, bytes)]
    assert all(isinstance(n, str) for n in names if not isinstance(n, bytes)) and sum(isinstance(n, bytes) for n in names) == 1
    assert all(isinstance(r["label"], float) and isinstance(r["class"], str) for r in records)
    assert {r["class"]: r["label"] for r in records} == {"daisy": 0.0, "rose": 1.0, "tulip": 2.0}


def test_a_run_on_object_storage(flowers):
    fsspec = pytest.importorskip("fsspec")
    _, runs = flowers
    memory = fsspec.filesystem("memory")
    for name in os.listdir(runs["ofrecord"]):
        if os.path.isfile(os.path.join(runs["ofrecord"], name)):
            memory.pipe(f"/ra-run/{name}", open(os.path.join(runs["ofrecord"], name), "rb").read())
    for split in ("train", "validation"):
        for name in os.listdir(os.path.join(runs["ofrecord"], split)):
            memory.pipe(f"/ra-run/{split}/{name}", open(os.path.join(runs["ofrecord"], split, name), "rb").read())
    remote = load.RecordDataset("memory://ra-run", "train", decode=False)
    local = load.RecordDataset(runs["ofrecord"], "train", decode=False)
    assert len(remote) == len(local) and [remote[i] for i in (5, 0, -1)] == [local[i] for i in (5, 0, -1)]


@pytest.mark.slow
def test_arrayrecord_in_forked_workers_after_the_parent_read_is_refused_clearly_and_spawn_works(flowers):
    """The array_record library does not survive fork once the parent has read (workers hung or segfaulted):
    a forked worker gets prep's one-line advice instead, and spawned workers read every record."""
    import torch

    _, runs = flowers
    dataset = load.RecordDataset(runs["arrayrecord"], "train", decode=False)
    first = dataset[0]  # the parent reads: what a user does to look at a record before training
    forked = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=1, collate_fn=list, multiprocessing_context="fork")
    with pytest.raises(ConfigError, match="cannot be read in a process forked after its parent read them.*multiprocessing_context='spawn'"):
        list(forked)
    spawned = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=list, multiprocessing_context="spawn")
    read = [record for batch in spawned for record in batch]
    assert read[0] == first and read == [dataset[i] for i in range(len(dataset))]
