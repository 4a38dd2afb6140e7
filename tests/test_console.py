"""The console never floods: warnings of one kind are capped (a few lines, then one line with the count),
while summary.json keeps every one."""

from __future__ import annotations

import json
import logging

from conftest import crop, png_bytes
from test_pipeline import SLIM

from prep.encoders.passthrough import PassthroughEncoder
from prep.executors.local import LocalExecutor
from prep.labels.space import SpaceLabels
from prep.pipeline import convert
from prep.run.capped import CappedLog
from prep.sources.image_dir import ImageDirSource
from prep.split import StratifiedSplit
from prep.writers import TFRecordWriter


def _convert(root, labels, out, **split):
    return convert(
        name="t", source=ImageDirSource(str(root)), labels=SpaceLabels(str(labels)), splitter=StratifiedSplit(**split),
        encoder=PassthroughEncoder(), writer=TFRecordWriter(shard_size=100, features=SLIM), executor=LocalExecutor(1),
        output_dir=str(out), progress=False,
    )


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_many_duplicate_groups_with_different_labels_are_a_few_lines(tmp_path, photos, caplog):
    """60 pictures each saved twice under two class labels: 10 lines name groups, one line counts the other 50;
    summary.json lists all 60 conflicts and skips all 120 copies."""
    root = tmp_path / "images"
    root.mkdir()
    lines = []
    for i in range(60):
        data = png_bytes(crop(photos, i, size=16))
        for copy in (0, 1):
            (root / f"{i:03d}_{copy}.png").write_bytes(data)
            lines.append(f"{i:03d}_{copy}.png {copy}")
    for i in range(40):  # and distinct images, so the run has something to write
        (root / f"u{i:03d}.png").write_bytes(png_bytes(crop(photos, 500 + i, size=16)))
        lines.append(f"u{i:03d}.png {i % 2}")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        summary = _convert(root, labels, tmp_path / "out")
    said = _warnings(caplog)
    named = [m for m in said if m.startswith("the same image with different labels")]
    counted = [m for m in said if "more groups of the same image with different labels" in m]
    assert len(named) == CappedLog.SHOWN and counted == [
        "50 more groups of the same image with different labels, every copy left out: summary.json duplicates lists every one"
    ]
    assert sum(1 for g in summary["duplicates"]["groups"] if g["conflict"]) == 60
    assert len([s for s in summary["skipped"] if "duplicate conflict" in s["reason"]]) == 120
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["duplicates"]["conflicts"] == 60
    assert len(said) < 20  # skip lines are capped too (SkipLog)


def test_many_classes_too_small_for_a_split_are_a_few_lines(tmp_path, photos, caplog):
    """30 classes of one image each cannot reach validation or test: 10 notes, one count line; every note is
    in summary.json's split_notes."""
    root = tmp_path / "images"
    root.mkdir()
    lines = []
    for i in range(30):
        (root / f"{i:03d}.png").write_bytes(png_bytes(crop(photos, i, size=16)))
        lines.append(f"{i:03d}.png c{i:02d}")
    for i in range(20):
        (root / f"big{i:03d}.png").write_bytes(png_bytes(crop(photos, 100 + i, size=16)))
        lines.append(f"big{i:03d}.png big")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        summary = _convert(root, labels, tmp_path / "out", val=0.2, test=0.2)
    said = _warnings(caplog)
    notes = [m for m in said if m.startswith("class 'c") and "too few for" in m]
    assert len(notes) == CappedLog.SHOWN
    assert [m for m in said if m.startswith("20 more notes like the above (class too small for a split)")]
    assert len([n for n in summary["split_notes"] if "too few for" in n]) == 30


def test_the_cap_counts_what_it_does_not_show(caplog):
    log = logging.getLogger("prep.test")
    said = CappedLog(log, "{count} more of these")
    with caplog.at_level(logging.WARNING, logger="prep.test"):
        for i in range(1234):
            said.warning("line %d", i)
        said.end()
        said.end()  # said once
    assert [r.getMessage() for r in caplog.records] == [f"line {i}" for i in range(10)] + ["1,224 more of these"]
