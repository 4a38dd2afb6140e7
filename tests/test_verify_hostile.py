"""prep.verify, prep.inspect and prep.load against what a hostile tester put in a run folder.

Each test closes one reported break: int64 class ids at the ends of the range, FIFOs and devices where
files belong, stray shards hidden by compression, symlinks or prep's own folders, decompression bombs
under --decode and --grid, lone compressed shards, and class names that need CSV quoting.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from prep import inspect, load, verify
from prep import summary as summaries
from prep.errors import InputError
from prep.executors import LocalExecutor
from prep.encoders import ImageEncoder
from prep.labels import EmbeddedLabels
from prep.pipeline import convert
from prep.sources import DigitsSource, LabelEntry
from prep.split import NoSplit
from prep.writers import TFRecordWriter
from test_verify import SLIM, call, edit_summary

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
HUGE_IDS = [1234567890123456789, INT64_MIN, INT64_MAX]


class HugeIdLabels:
    """Integer labels at the ends of int64 (a run of these exits 0, so the tools must read it back)."""

    def entries(self, source) -> list[LabelEntry]:
        return [LabelEntry(e.name, str(HUGE_IDS[int(e.label) % 3]), e.where, e.ref) for e in source.labelled_entries()]


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
