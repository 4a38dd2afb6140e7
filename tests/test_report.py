"""report.html: every number on the page equals summary.json, every image is embedded, nothing points outside
the file; skips and duplicates are shown; prep-report rebuilds the same bytes; big runs stay quick."""

from __future__ import annotations

import base64
import inspect
import json
import logging
import os
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import crop, jpeg_bytes, make_class_folders, png_bytes, run_prep
from test_pipeline import SLIM  # the slim keys, one definition for the tests

from prep.encoders.passthrough import PassthroughEncoder
from prep.executors.local import LocalExecutor
from prep.labels.subdirs import SubdirLabels
from prep.pipeline import convert
from prep.sources.image_dir import ImageDirSource
from prep.split import StratifiedSplit
from prep.tools import report
from prep.writers import TFRecordWriter


class Page(HTMLParser):
    """The parts of report.html the tests check: tagged numbers (with their text), tags and attributes, CSS."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.numbers: list[dict] = []  # {"tag", "attrs", "text"} of each element with data-key
        self.tags: list[tuple[str, dict]] = []
        self.css = ""
        self._open: list[dict | None] = []
        self._in_style = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        self._in_style = tag == "style"
        if tag in ("img", "meta", "br", "rect", "input", "link"):
            return  # void (or self-closed in SVG)
        entry = {"tag": tag, "attrs": attrs, "text": ""} if "data-key" in attrs else None
        if entry:
            self.numbers.append(entry)
        self._open.append(entry)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        self._in_style = False
        if tag in ("img", "meta", "br", "rect", "input", "link"):
            return
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        if self._in_style:
            self.css += data
        for entry in self._open:
            if entry is not None:
                entry["text"] += data

    def images(self) -> list[str]:
        return [attrs.get("src", "") for tag, attrs in self.tags if tag == "img"]


def at(summary: dict, key: list):
    value = summary
    for part in key:
        value = value[part]
    return value


def check_numbers(page: Page, summary: dict) -> set[tuple]:
    """Each tagged number equals the summary.json value it names (and reads as that value); returns the keys."""
    keys = set()
    for entry in page.numbers:
        key = json.loads(entry["attrs"]["data-key"])
        value = at(summary, key)
        expected = len(value) if entry["attrs"].get("data-of") == "count" else value
        shown = json.loads(entry["attrs"]["data-value"])
        assert shown == expected, (key, shown, expected)
        text = entry["text"].strip()
        if entry["attrs"].get("class") == "n" and entry["tag"] in ("span", "tspan"):
            if isinstance(expected, int):
                assert text == f"{expected:,}", (key, text)
            else:
                assert float(text.replace(",", "")) == pytest.approx(expected, abs=1e-3), (key, text)
        elif entry["attrs"].get("class") == "p":
            assert text == f"{100 * expected:.1f}%", (key, text)
        keys.add(tuple(key))
    return keys


def check_self_contained(text: str, page: Page) -> int:
    """No script, no link, no external URL in any attribute or in the CSS; every <img> a decodable data: JPEG."""
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed", "base"), tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)  # no inline event handlers either
            if name in ("src", "href", "action", "srcset", "poster", "xlink:href", "data"):
                assert value.startswith("data:image/jpeg;base64,"), (tag, name, value[:60])
    assert "url(" not in page.css and "@import" not in page.css
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", text, re.I)
    decoded = 0
    for src in page.images():
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert pixels is not None and max(pixels.shape[:2]) <= report.THUMB
        decoded += 1
    return decoded


def make_folder(root: Path, photos, per_class: int = 12) -> list[str]:
    names = make_class_folders(root, photos, per_class=per_class)
    (root / "daisy" / "cut.jpg").write_bytes(jpeg_bytes(crop(photos, 99))[:300])  # truncated: skipped
    (root / "rose" / "junk.jpg").write_bytes(b"not an image at all")
    return names


def run(out: Path, image_dir: Path, **kwargs) -> dict:
    return convert(
        name="flowers",
        source=ImageDirSource(str(image_dir)),
        labels=SubdirLabels(),
        splitter=StratifiedSplit(val=0.2, test=0.2, seed=1),
        encoder=PassthroughEncoder(),
        writer=TFRecordWriter(shard_size=5, features=SLIM),
        executor=LocalExecutor(1),
        output_dir=str(out),
        progress=False,
        run_info={"overrides": ["split=stratified", "writer.shard_size=5"]},
        **kwargs,
    )


@pytest.fixture
def flower_run(tmp_path, photos):
    image_dir = tmp_path / "flowers"
    make_folder(image_dir, photos)
    out = tmp_path / "out"
    summary = run(out, image_dir)
    return out, image_dir, summary


def test_a_run_writes_a_report_whose_numbers_are_summary_json(flower_run):
    out, _, summary = flower_run
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    text = (out / "report.html").read_text()
    page = Page(text)
    keys = check_numbers(page, on_disk)
    # every class count of every split, every shard, the totals and the histograms are on the page
    for split, entry in on_disk["splits"].items():
        assert {("splits", split, "num_records"), ("splits", split, "num_shards")} <= keys
        assert {("splits", split, "classes", label) for label in entry["classes"]} <= keys
    assert {("shards", i, "num_records") for i in range(len(on_disk["shards"]))} <= keys
    assert {("num_records",), ("shards",), ("skipped",), ("seconds",)} <= keys
    assert {("image_sizes", "height", i) for i, n in enumerate(on_disk["image_sizes"]["height"]) if n} <= keys
    assert {("image_formats", name) for name in on_disk["image_formats"]} <= keys
    # the shard entries carry their class mix, and it adds up
    for shard in on_disk["shards"]:
        assert sum(shard["class_counts"].values()) == shard["num_records"]
    assert sum(on_disk["image_sizes"]["height"]) == sum(on_disk["image_sizes"]["width"]) == on_disk["num_records"] == 36
    # the headline names the run and its overrides
    assert "<h1>flowers</h1>" in text and "<code>writer.shard_size=5</code>" in text
    for name in ("daisy", "rose", "tulip"):
        assert f">{name}</text>" in text


def test_every_image_is_an_embedded_thumbnail_and_nothing_points_outside(flower_run):
    out, _, summary = flower_run
    text = (out / "report.html").read_text()
    page = Page(text)
    decoded = check_self_contained(text, page)
    # the sample grid: 16 records of each split, or all of a smaller one
    assert decoded == sum(min(report.SAMPLES_PER_SPLIT, s["num_records"]) for s in summary["splits"].values()) == 16 + 6 + 6  # the 2 bad files are scanned out before the split


def test_skipped_images_are_listed_with_a_placeholder_when_they_do_not_decode(flower_run):
    out, _, summary = flower_run
    assert sorted(s["source"] for s in summary["skipped"]) == ["daisy/cut.jpg", "rose/junk.jpg"]
    text = (out / "report.html").read_text()
    assert "Skipped images: <span" in text
    rows = text.split("<h2>Skipped images")[1].split("<h2>")[0].split("<tr>")[2:]
    assert len(rows) == 2
    for skip, row in zip(summary["skipped"], rows):
        assert '<div class="ph">does not decode</div>' in row and skip["source"] in row and "<img" not in row


def duplicates_summary(summary: dict) -> dict:
    """A run's summary with the keys issue 13's scan and splitters add, made by hand (design13.md's shapes)."""
    summary = json.loads(json.dumps(summary))
    summary["duplicates"] = {
        "mode": "exact", "keep": "first", "dropped": 1, "conflicts": 1,
        "groups": [
            {"kind": "exact", "names": ["daisy/000.jpg", "rose/001.jpg"], "labels": [0, 1], "splits": ["train", None], "kept": [True, False], "conflict": True},
            {"kind": "near", "names": ["tulip/002.jpg", "tulip/gone.jpg", "../outside.jpg"], "labels": [2, 2, 2], "splits": ["test", "test", "test"], "kept": [True, True, True], "conflict": False},
        ],
    }
    summary["scan"] = {"images": 38, "bytes": 123456, "seconds": 0.25, "hashed": True, "perceptual": False}
    summary["split_balance"] = {
        str(label): {split: {"target": t, "achieved": a, "images": n} for split, t, a, n in (("train", 0.6, 0.5833, 7), ("validation", 0.2, 0.25, 3), ("test", 0.2, 0.1667, 2))}
        for label in range(3)
    }
    summary["split_notes"] = ["class 'tulip' has no image in validation", "class <b>x</b> is 10x smaller than 'daisy'"]
    summary["exif"] = {"mode": "apply", "oriented": 3, "applied": 2}
    summary["skipped"].append({"source": "daisy/003.jpg", "reason": "hand-made: a readable skipped image"})
    return summary


def test_duplicates_balance_notes_and_exif_from_a_hand_made_summary(flower_run, photos):
    out, image_dir, summary = flower_run
    (image_dir.parent / "outside.jpg").write_bytes(jpeg_bytes(crop(photos, 3)))  # decodable, but outside image_dir
    summary = duplicates_summary(summary)
    text = report.render(summary, str(out), ImageDirSource(str(image_dir)))
    page = Page(text)
    keys = check_numbers(page, summary)
    assert {("duplicates", "groups"), ("duplicates", "dropped"), ("duplicates", "conflicts"), ("scan", "images"), ("exif", "oriented"), ("exif", "applied"), ("split_notes",)} <= keys
    assert {("split_balance", "1", "validation", k) for k in ("target", "achieved", "images")} <= keys
    check_self_contained(text, page)
    groups = text.split("<h2>Duplicates</h2>")[1].split("<h2>")[0].split('<div class="group')[1:]
    assert len(groups) == 2 and groups[0].startswith(' conflict"') and groups[1].startswith('"')
    first, second = groups
    assert first.count("<img") == 2 and "conflict: different labels" in first  # side by side, both thumbnails
    assert "daisy \u00b7 train" in first and "rose \u00b7 dropped" in first
    # a missing copy and a name outside the source folder get placeholders: nothing outside image_dir is read
    assert second.count("<img") == 1 and second.count('<div class="ph">cannot be read</div>') == 2
    # the readable skipped image has its thumbnail
    [row] = [r for r in text.split("<h2>Skipped images")[1].split("<h2>")[0].split("<tr>") if "<code>daisy/003.jpg</code>" in r]
    assert "<img" in row
    # notes are text, never markup
    assert "class &lt;b&gt;x&lt;/b&gt; is 10x smaller" in text and "<b>x</b>" not in text


def test_thumbnails_keep_the_max_pixels_guard_and_the_source_folder(tmp_path, photos):
    image_dir = tmp_path / "img"
    image_dir.mkdir()
    (image_dir / "big.png").write_bytes(png_bytes(crop(photos, 1, size=200)))
    (tmp_path / "secret.png").write_bytes(png_bytes(crop(photos, 2)))
    (image_dir / "link.png").symlink_to(tmp_path / "secret.png")
    thumbs = report.Thumbnails(ImageDirSource(str(image_dir)), max_pixels=100 * 100)
    assert thumbs.of_name("big.png") == (None, "over max_pixels")
    assert thumbs.of_name("link.png")[0] is None  # a symlink leading outside image_dir is never read
    assert thumbs.of_name("../secret.png")[0] is None
    uri, _ = report.Thumbnails(ImageDirSource(str(image_dir))).of_name("big.png")
    pixels = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert pixels.shape == (report.THUMB, report.THUMB, 3)


def test_a_report_that_cannot_be_made_never_fails_the_run(tmp_path, photos, monkeypatch, caplog):
    image_dir = tmp_path / "flowers"
    make_folder(image_dir, photos, per_class=4)

    def broken(*args, **kwargs):
        raise RuntimeError("no report today")

    monkeypatch.setattr(report, "render", broken)
    with caplog.at_level(logging.WARNING, logger="prep.report"):
        summary = run(tmp_path / "out", image_dir)
    assert summary["num_records"] == 12 and (tmp_path / "out" / "summary.json").exists()
    assert not (tmp_path / "out" / "report.html").exists()
    assert "report.html not written: no report today" in caplog.text


def test_the_report_is_prep_s_own_file_for_verify_and_overwrite(flower_run):
    from prep.tools.verify import verify_run

    out, image_dir, _ = flower_run
    assert all(ok for ok, _ in verify_run(str(out)))
    run(out, image_dir, overwrite=True)  # the earlier run's report is replaced, not "a file in the way"
    assert (out / "report.html").exists()


def write_hydra_config(out: Path, image_dir: Path) -> None:
    (out / ".hydra").mkdir()
    (out / ".hydra" / "config.yaml").write_text(
        f"source:\n  _target_: prep.sources.ImageDirSource\n  image_dir: {image_dir}\n  extension: null\n"
        "  max_image_bytes: ${max_image_bytes}\nmax_pixels: 400000000\nmax_image_bytes: 268435456\n"
    )


def test_prep_report_rebuilds_the_same_bytes(flower_run, capsys):
    out, image_dir, _ = flower_run
    write_hydra_config(out, image_dir)
    written = (out / "report.html").read_bytes()
    (out / "report.html").unlink()
    assert report.main([str(out), "--images", str(image_dir)]) == 0  # the run's source folder, named by the user
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    assert (out / "report.html").read_bytes() == written
    assert not list(out.glob("*.partial"))


def test_prep_report_errors_are_one_line(tmp_path, capsys):
    assert report.main([str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'nowhere'}: no such folder\n"
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_a_thousand_classes_and_shards_render_quickly_and_small(tmp_path):
    """A summary of 100k images in 1000 classes and 1000 shards (no shards on disk: the samples say so)."""
    rng = np.random.default_rng(0)
    classes = 1000
    shards, totals = [], {}
    for i in range(1000):
        counts = {str(c): int(n) for c, n in enumerate(rng.multinomial(100, np.ones(classes) / classes)) if n}
        for c, n in counts.items():
            totals[c] = totals.get(c, 0) + n
        shards.append({"path": f"train-{i:05d}", "split": "train", "num_records": 100, "bytes": 10_000, "sha256": "0" * 64, "extra_files": [], "class_counts": counts})
    summary = {
        "dataset": "big", "format": "tfrecord", "compression": None, "pattern": "{split}-{index:05d}", "num_records": 100_000,
        "splits": {"train": {"num_records": 100_000, "num_shards": 1000, "classes": dict(sorted(totals.items(), key=lambda kv: int(kv[0])))}},
        "shards": shards, "label_map": {f"class_{c:04d}": c for c in range(classes)},
        "features": {"image/encoded": "bytes", "image/class/label": "int64"},
        "feature_fields": {"image/encoded": "encoded", "image/class/label": "label"},
        "image_formats": {"jpeg": 100_000}, "skipped": [{"source": f"x/{i}.jpg", "reason": "bad"} for i in range(5000)],
        "split_notes": [f"note {i}" for i in range(500)], "seconds": 12.5,
    }
    started = time.perf_counter()
    text = report.render(summary, str(tmp_path))
    assert time.perf_counter() - started < 5
    assert len(text) < 1_500_000
    page = Page(text)
    check_numbers(page, summary)
    assert "and 970 more classes" in text and "and 600 more shards" in text and "and 4,960 more" in text
    assert "cannot read samples" in text


@pytest.mark.slow
def test_a_run_of_thousands_of_images_reports_in_little_time(tmp_path, photos):
    image_dir = tmp_path / "many"
    for i in range(3000):
        path = image_dir / f"c{i % 30:02d}" / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(crop(photos, i, size=24)))
    summary = run(tmp_path / "out", image_dir)
    started = time.perf_counter()
    text = report.render(summary, str(tmp_path / "out"), ImageDirSource(str(image_dir)))
    assert time.perf_counter() - started < 2
    assert text == (tmp_path / "out" / "report.html").read_text()
    check_numbers(Page(text), summary)


@pytest.mark.slow
def test_prep_and_prep_report_from_the_command_line(tmp_path, photos):
    image_dir = tmp_path / "flowers"
    make_folder(image_dir, photos, per_class=6)
    run_dir = tmp_path / "run"
    run_prep("dataset=images", f"source.image_dir={image_dir}", "labels=subdirs", "split=stratified", "progress=false", f"hydra.run.dir={run_dir}")
    written = (run_dir / "report.html").read_bytes()
    proc = run_prep(str(run_dir), "--images", str(image_dir), module="prep.report")
    assert proc.stdout.startswith(f"wrote {run_dir / 'report.html'}")
    assert (run_dir / "report.html").read_bytes() == written
    assert b'<div class="ph">does not decode</div>' in written  # the skipped files, read through the saved config
    failed = run_prep(str(tmp_path), module="prep.report", check=False)
    assert failed.returncode == 1 and failed.stderr.count("\n") == 1 and failed.stderr.startswith("error: ")
    assert os.path.exists(run_dir / "summary.json")


@pytest.mark.parametrize("fmt", ["tfrecord", "ofrecord", "arrayrecord", "webdataset"])
@pytest.mark.parametrize("raw", [False, True])
def test_the_sample_grid_reads_every_format_and_raw_pixels(tmp_path, fmt, raw):
    from prep.encoders.image import ImageEncoder
    from prep.encoders.raw import RawEncoder
    from prep.labels.embedded import EmbeddedLabels
    from prep.sources.digits import DigitsSource
    from prep.split import NoSplit
    from prep.writers import FORMATS

    writer = FORMATS[fmt]
    keys = {"features": SLIM} if "features" in inspect.signature(writer).parameters else {}  # WebDataset's keys are fixed
    summary = convert(
        name="digits", source=DigitsSource(), labels=EmbeddedLabels(), splitter=NoSplit("train"),
        encoder=RawEncoder() if raw else ImageEncoder("png"), writer=writer(num_shards=2, shard_size=None, **keys),
        executor=LocalExecutor(1), output_dir=str(tmp_path / "out"), limit=40, progress=False,
    )
    text = (tmp_path / "out" / "report.html").read_text()
    page = Page(text)
    check_numbers(page, json.loads((tmp_path / "out" / "summary.json").read_text()))
    assert check_self_contained(text, page) == report.SAMPLES_PER_SPLIT
    assert 'class="px" width="96" height="96"' in text  # 8x8 digits drawn large, pixel by pixel
    assert summary["image_sizes"]["height"][report_bin(8)] == 40


def report_bin(size: int) -> int:
    from prep.core.values import SIZE_BINS

    return max(i for i, low in enumerate(SIZE_BINS) if low <= size)


def test_report_html_is_written_before_summary_json(tmp_path, photos, monkeypatch):
    from prep.runfiles import summary as summaries

    image_dir = tmp_path / "flowers"
    make_folder(image_dir, photos, per_class=4)
    seen = []
    write = summaries.write

    def checked(output_dir, summary):
        seen.append(os.path.exists(os.path.join(output_dir, "report.html")))
        write(output_dir, summary)

    monkeypatch.setattr(summaries, "write", checked)
    run(tmp_path / "out", image_dir)
    assert seen == [True]


def test_the_size_histogram_survives_the_manifest_for_resume():
    from prep.core.values import Encoded, ShardResult, ShardStats, merged_sizes

    stats = ShardStats()
    for height, width in ((8, 8), (100, 300), (9000, 20)):
        stats.add(0, Encoded(b"", "png", height, width, 3))
    result = stats.result("a", "train", 3, 10, "0" * 64, [], [])
    sizes = result.sizes
    assert result.shapes == {"height": [8, 9000], "width": [8, 300], "channels": [3]} and result.class_counts == {0: 3}
    again = ShardResult.from_dict(json.loads(json.dumps(result.as_dict())))
    assert again == result
    merged = merged_sizes([again.sizes, {}, sizes])
    assert merged["height"][report_bin(8)] == 2 and merged["height"][report_bin(100)] == 2 and merged["height"][-1] == 2
    assert merged["width"][report_bin(20)] == 2 and merged["width"][report_bin(300)] == 2 and sum(merged["width"]) == 6
    old = result.as_dict()
    del old["sizes"]  # a manifest written before the histogram: not reused (outputs.reusable writes the shard again)
    with pytest.raises(KeyError):
        ShardResult.from_dict(old)
