"""The pipeline built from stages directly (no Hydra): items, labels, shards and summary agree with the inputs."""

from __future__ import annotations

import json

import pytest
from conftest import crop, png_bytes

from prep.core.errors import ConfigError, InputError
from prep.encoders.image import ImageEncoder
from prep.encoders.passthrough import PassthroughEncoder
from prep.executors.local import LocalExecutor
from prep.formats import tfrecord
from prep.labels.csv import CsvLabels
from prep.labels.embedded import EmbeddedLabels
from prep.labels.space import SpaceLabels
from prep.pipeline import convert
from prep.sources.digits import DigitsSource
from prep.sources.image_dir import ImageDirSource
from prep.split import NoSplit
from prep.writers import TFRecordWriter

SLIM = {
    "image/encoded": "encoded",
    "image/format": "format",
    "image/height": "height",
    "image/width": "width",
    "image/channels": "channels",
    "image/class/label": "label",
    "image/class/text": "text",
    "image/filename": "filename",
}


def run(out, source, labels, *, encoder=None, writer=None, workers=1, **kwargs):
    return convert(
        name=kwargs.pop("name", "test"),
        source=source,
        labels=labels,
        splitter=NoSplit("train"),
        encoder=encoder or PassthroughEncoder(),
        writer=writer or TFRecordWriter(shard_size=10, features=SLIM),
        executor=LocalExecutor(workers),
        output_dir=str(out),
        progress=False,
        **kwargs,
    )


def records(out, summary):
    found = []
    for shard in summary["shards"]:
        with open(out / shard["path"], "rb") as f:
            found += [tfrecord.decode_example(payload) for _, payload in tfrecord.read_records(f)]
    return found


def test_imagenet_folder_in_label_order_with_bytes_untouched(tmp_path, imagenet_folder):
    out = tmp_path / "out"
    summary = run(out, ImageDirSource(str(imagenet_folder.root)), SpaceLabels(str(imagenet_folder.labels)))
    assert summary["num_records"] == 24
    assert [s["num_records"] for s in summary["shards"]] == [8, 8, 8]  # shard_size=10, shard_fill=even
    got = records(out, summary)
    assert [r["image/filename"][1][0].decode() for r in got] == imagenet_folder.names
    assert [r["image/class/label"][1][0] for r in got] == imagenet_folder.label_ids
    assert all(r["image/encoded"][1][0] == imagenet_folder.bytes_of(n) for r, n in zip(got, imagenet_folder.names))
    formats = {r["image/filename"][1][0].decode(): r["image/format"][1][0] for r in got}
    assert formats["ILSVRC2012_val_00000002.JPEG"] == b"png"  # the PNG named .JPEG
    assert "image/class/text" not in got[0]  # integer labels: no class names to write
    assert summary["label_map"] == {}
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == summary


def test_class_names_map_to_sorted_ids_and_text(tmp_path, photos):
    images = tmp_path / "img"
    images.mkdir()
    rows = [("3", "truck"), ("1", "frog"), ("2", "airplane"), ("4", "frog")]
    for name, _ in rows:
        (images / f"{name}.png").write_bytes(png_bytes(crop(photos, int(name))))
    label_file = tmp_path / "trainLabels.csv"
    label_file.write_text("id,label\n" + "".join(f"{n},{l}\n" for n, l in rows))
    out = tmp_path / "out"
    summary = run(out, ImageDirSource(str(images), extension=".png"), CsvLabels(str(label_file), "id", "label"))
    assert summary["label_map"] == {"airplane": 0, "frog": 1, "truck": 2}
    got = records(out, summary)
    assert [(r["image/class/label"][1][0], r["image/class/text"][1][0]) for r in got] == [
        (2, b"truck"), (1, b"frog"), (0, b"airplane"), (1, b"frog"),
    ]
    assert [r["image/filename"][1][0] for r in got] == [b"3.png", b"1.png", b"2.png", b"4.png"]
    assert summary["splits"]["train"]["classes"] == {"0": 1, "1": 2, "2": 1}
    assert summary["features"]["image/class/text"] == "bytes"


def test_missing_and_escaping_entries_are_skipped_and_named(tmp_path, imagenet_folder):
    (imagenet_folder.root / "outside_link.JPEG").symlink_to(imagenet_folder.labels)
    extra = imagenet_folder.labels.read_text() + "missing.JPEG 1\n../val.txt 2\n/etc/passwd 3\noutside_link.JPEG 4\n"
    imagenet_folder.labels.write_text(extra)
    out = tmp_path / "out"
    summary = run(out, ImageDirSource(str(imagenet_folder.root)), SpaceLabels(str(imagenet_folder.labels)))
    assert summary["num_records"] == 24
    reasons = {s["source"]: s["reason"] for s in summary["skipped"]}
    assert reasons == {
        "missing.JPEG": "listed in the label file but missing from source.image_dir",
        "../val.txt": "path escapes source.image_dir",
        "/etc/passwd": "absolute path: label files name images relative to source.image_dir",
        "outside_link.JPEG": "symlink points outside source.image_dir",
    }
    assert summary["skipped"][0]["where"] == f"{imagenet_folder.labels}:25"


def test_unlabelled_images_are_reported(tmp_path, imagenet_folder):
    lines = imagenet_folder.labels.read_text().splitlines()
    imagenet_folder.labels.write_text("\n".join(lines[:20]) + "\n")
    summary = run(tmp_path / "out", ImageDirSource(str(imagenet_folder.root)), SpaceLabels(str(imagenet_folder.labels)))
    assert summary["num_records"] == 20
    assert summary["unlabelled"]["count"] == 4
    assert sorted(summary["unlabelled"]["examples"]) == sorted(imagenet_folder.names[20:])


def test_conflicting_duplicates_are_an_input_error(tmp_path, imagenet_folder):
    first = imagenet_folder.names[0]
    imagenet_folder.labels.write_text(imagenet_folder.labels.read_text() + f"{first} 99\n")
    with pytest.raises(InputError, match=f"{first} is listed again with another label"):
        run(tmp_path / "out", ImageDirSource(str(imagenet_folder.root)), SpaceLabels(str(imagenet_folder.labels)))


def test_limit_takes_the_first_labelled_images(tmp_path, imagenet_folder):
    summary = run(tmp_path / "out", ImageDirSource(str(imagenet_folder.root)), SpaceLabels(str(imagenet_folder.labels)), limit=5)
    assert summary["num_records"] == 5
    assert [r["image/filename"][1][0].decode() for r in records(tmp_path / "out", summary)] == imagenet_folder.names[:5]


def test_digits_num_shards_even_and_worker_count_does_not_change_bytes(tmp_path):
    writer = TFRecordWriter(shard_size=None, num_shards=4, features=SLIM)
    one = run(tmp_path / "one", DigitsSource(), EmbeddedLabels(), encoder=ImageEncoder("png"), writer=writer, workers=1)
    two = run(tmp_path / "two", DigitsSource(), EmbeddedLabels(), encoder=ImageEncoder("png"), writer=writer, workers=2)
    assert [s["num_records"] for s in one["shards"]] == [450, 449, 449, 449]
    assert [s["sha256"] for s in one["shards"]] == [s["sha256"] for s in two["shards"]]
    assert one["shards"][0]["path"] == "test-train.tfrecord-00000-of-00004"


def test_refuses_a_finished_run_unless_overwrite(tmp_path):
    writer = TFRecordWriter(shard_size=1000, features=SLIM)
    run(tmp_path, DigitsSource(), EmbeddedLabels(), encoder=ImageEncoder("png"), writer=writer, limit=3)
    before = (tmp_path / "summary.json").read_bytes()
    with pytest.raises(ConfigError, match="already holds a finished run"):
        run(tmp_path, DigitsSource(), EmbeddedLabels(), encoder=ImageEncoder("png"), writer=writer, limit=4)
    assert (tmp_path / "summary.json").read_bytes() == before
    assert run(tmp_path, DigitsSource(), EmbeddedLabels(), encoder=ImageEncoder("png"), writer=writer, limit=4, overwrite=True)["num_records"] == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shard_size": 10, "num_shards": 2}, "both set: choose one"),
        ({"shard_size": None, "num_shards": None}, "set writer.shard_size"),
        ({"shard_size": 0}, "writer.shard_size=0: must be a positive integer"),
        ({"pattern": "data.tfrecord"}, "needs {index} or {number}"),
        ({"pattern": "{name}-{index}"}, r"unknown field\(s\) \['name'\]"),
        ({"pattern": "../{index}"}, "must stay inside the output directory"),
        ({"features": {"image": "pixels"}}, "unknown field 'pixels'"),
        ({"features": {"image": "encoded", "label": "label:int32"}}, r"tfrecord stores \['bytes', 'float', 'int64'\], not 'int32'"),
        ({"features": {"label": "label"}}, "no key for the image"),
        ({"compression": "gzip", "dali_index": True}, "needs uncompressed shards"),
    ],
)
def test_writer_settings_are_checked_before_writing(kwargs, message):
    kwargs = {"features": SLIM, **kwargs}
    with pytest.raises(ConfigError, match=message):
        TFRecordWriter(**kwargs)


def test_more_shards_than_images_is_a_clear_error(tmp_path):
    writer = TFRecordWriter(shard_size=None, num_shards=5, features=SLIM)
    with pytest.raises(ConfigError, match="writer.num_shards=5 is more than the 3 images of split 'train'"):
        run(tmp_path, DigitsSource(), EmbeddedLabels(), encoder=ImageEncoder("png"), writer=writer, limit=3)
    assert not (tmp_path / "summary.json").exists()


def test_a_shard_whose_images_are_all_bad_is_not_written(tmp_path, imagenet_folder):
    for name in imagenet_folder.names[:10]:  # the whole first shard
        (imagenet_folder.root / name).write_bytes(b"not an image")
    out = tmp_path / "out"
    summary = run(out, ImageDirSource(str(imagenet_folder.root)), SpaceLabels(str(imagenet_folder.labels)))
    assert [s["path"] for s in summary["shards"]] == ["test-train.tfrecord-00001-of-00003", "test-train.tfrecord-00002-of-00003"]
    assert not (out / "test-train.tfrecord-00000-of-00003").exists()
    assert not list(out.glob("*.partial"))
    assert summary["num_records"] == 14 and len(summary["skipped"]) == 10
    assert summary["splits"]["train"]["num_shards"] == 2


def test_a_write_error_names_the_shard_and_leaves_no_summary(tmp_path, imagenet_folder, monkeypatch):
    import errno

    from prep import writers
    from prep.core.errors import WriteError

    def disk_full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers.sink._HashingFile, "_write_all", disk_full)
    out = tmp_path / "out"
    with pytest.raises(WriteError, match=r"test-train.tfrecord-00000-of-00003: write failed: No space left on device"):
        run(out, ImageDirSource(str(imagenet_folder.root)), SpaceLabels(str(imagenet_folder.labels)))
    assert not (out / "summary.json").exists()
    assert not [p for p in out.iterdir() if "tfrecord" in p.name]  # no shard, final or partial
