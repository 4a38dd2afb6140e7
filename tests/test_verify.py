"""prep.verify, prep.inspect and prep.load on finished runs, edited summaries and damaged shards.

The promise under test: verify says "ok" only when summary.json says exactly what the shards hold, and
any file given to the tools gives one `error: ...` line naming it (exit 1), never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import crop, jpeg_bytes
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from prep import load
from prep.core.errors import PrepError
from prep.encoders.image import ImageEncoder
from prep.executors.local import LocalExecutor
from prep.labels.base import LabelFormat
from prep.labels.embedded import EmbeddedLabels
from prep.pipeline import convert
from prep.runfiles import summary as summaries
from prep.sources.base import LabelEntry
from prep.sources.digits import DigitsSource
from prep.split import NoSplit, StratifiedSplit
from prep.tools import inspect, verify
from prep.writers import OFRecordWriter, TFRecordWriter

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
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
TFDS = "{dataset}-{split}.tfrecord-{index:05d}-of-{count:05d}"
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class NamedDigitLabels(LabelFormat):
    """The digits with class names ("three"), so records carry image/class/text and label_map is filled."""

    def iter_entries(self, source) -> Iterator[LabelEntry]:
        return iter([LabelEntry(e.name, NAMES[int(e.label)], e.where, e.ref) for e in source.labelled_entries()])


def convert_digits(out: Path, writer, labels=None, splitter=None, limit: int = 60) -> dict:
    return convert(
        name="digits", source=DigitsSource(), labels=labels or EmbeddedLabels(), splitter=splitter or NoSplit("train"),
        encoder=ImageEncoder("png"), writer=writer, executor=LocalExecutor(1), output_dir=str(out), limit=limit, progress=False,
    )


@pytest.fixture(scope="module")
def named_run(tmp_path_factory) -> Path:
    """TFRecord, class names, three splits, DALI index files: every summary-level check has something to check."""
    out = tmp_path_factory.mktemp("named") / "run"
    writer = TFRecordWriter(shard_size=12, features=SLIM, dali_index=True)
    convert_digits(out, writer, NamedDigitLabels(), StratifiedSplit(val=0.2, test=0.2, seed=0))
    return out


@pytest.fixture(scope="module")
def of_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("of") / "run"
    convert_digits(out, OFRecordWriter(num_shards=2, features={"images": "encoded", "labels": "label:int32"}), limit=30)
    return out


@pytest.fixture
def run(named_run, tmp_path) -> Path:
    """A private copy of the named run, free to damage."""
    return Path(shutil.copytree(named_run, tmp_path / "run"))


def call(main, *args: str) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue().splitlines(), err.getvalue()


def edit_summary(run: Path, change) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    change(summary)
    (run / "summary.json").write_text(json.dumps(summary))
    return summary


# --- summary.json's new keys -------------------------------------------------------------------------------


def test_summary_records_the_pattern_and_the_files_beside_each_shard(named_run, of_run):
    summary = json.loads((named_run / "summary.json").read_text())
    assert summary["pattern"] == TFDS
    assert [s["extra_files"] for s in summary["shards"]] == [[s["path"] + ".idx"] for s in summary["shards"]]
    assert all((named_run / s["path"]).with_name(Path(s["path"]).name + ".idx").exists() for s in summary["shards"])
    of = json.loads((of_run / "summary.json").read_text())
    assert of["pattern"] == "{split}/part-{index}"
    assert [(s["path"], s["extra_files"]) for s in of["shards"]] == [("train/part-0", []), ("train/part-1", [])]


def test_shard_name_regex_from_the_pattern():
    tfds = verify.shard_name_regex(TFDS)
    assert tfds.fullmatch("digits-train.tfrecord-00003-of-00010")
    assert tfds.fullmatch("other-validation.tfrecord-7-of-9")
    assert not tfds.fullmatch("digits-train.tfrecord-00003-of-00010.idx")
    assert not tfds.fullmatch("digits-train.tfrecord-x-of-00010")
    parts = verify.shard_name_regex("{split}/part-{index}")
    assert parts.fullmatch("train/part-12") and not parts.fullmatch("train/part-") and not parts.fullmatch("a/b/part-1")
    assert verify.shard_name_regex("{name}_{split}_{number:05d}-of-{count:05d}.tfrecord").fullmatch("x_train_00001-of-00002.tfrecord")


# --- verify on good runs -------------------------------------------------------------------------------


def test_a_good_run_verifies_line_by_line(named_run):
    summary = json.loads((named_run / "summary.json").read_text())
    code, lines, err = call(verify.main, named_run, "--decode")
    assert (code, err) == (0, "")
    shard_lines = [f"ok   {s['path']}: {s['num_records']} records, {s['bytes']:,} bytes" for s in summary["shards"]]
    n = len(summary["shards"])
    assert lines[:n] == shard_lines
    assert lines[n] == f"ok   summary.json: 60 records in {n} shard(s) and 3 split(s), totals agree"
    splits = summary["splits"]
    assert lines[n + 1 : n + 4] == [
        f"ok   split {name}: {s['num_records']} records in {s['num_shards']} shard(s), {len(s['classes'])} classes, as read"
        for name, s in splits.items()
    ]
    metadata = [f"ok   {m['path']}: {m['bytes']:,} bytes" for m in summary["metadata_files"]]  # TFDS's files
    assert len(metadata) == 3
    assert lines[n + 4 :] == [*metadata, "ok   folder: no unlisted shards", f"{n} of {n} shards ok"]
    assert sum(s["num_records"] for s in splits.values()) == 60 and set(splits) == {"train", "validation", "test"}


def test_ofrecord_run_verifies(of_run):
    code, lines, _ = call(verify.main, of_run, "--decode")
    assert code == 0
    assert lines[0] == "ok   train/part-0: 15 records, " + f"{(of_run / 'train/part-0').stat().st_size:,} bytes"
    assert lines[-3:] == ["ok   split train: 30 records in 2 shard(s), 10 classes, as read", "ok   folder: no unlisted shards", "2 of 2 shards ok"]


def test_verify_true_in_the_pipeline_still_passes(tmp_path):
    writer = TFRecordWriter(shard_size=10, features=SLIM, dali_index=True)
    summary = convert(
        name="digits", source=DigitsSource(), labels=NamedDigitLabels(), splitter=NoSplit("train"), encoder=ImageEncoder("png"),
        writer=writer, executor=LocalExecutor(1), output_dir=str(tmp_path), limit=25, progress=False, verify=True,
    )
    assert summary["num_records"] == 25 and (tmp_path / "summary.json").exists()


# --- verify catches a summary that does not say what the shards hold -----------------------------------


def _drop_last_shard(s, run):
    shard = s["shards"].pop()
    (run / shard["path"]).unlink()
    (run / (shard["path"] + ".idx")).unlink()
    return shard


def test_dropping_a_shard_and_its_entry_is_caught(run):
    dropped = {}
    edit_summary(run, lambda s: dropped.update(_drop_last_shard(s, run)))
    code, lines, _ = call(verify.main, run)
    assert code == 1 and dropped["path"] == "digits-test.tfrecord-00000-of-00001"
    assert [l for l in lines if not l.startswith("ok")] == [
        'FAIL summary.json: num_records is 60, its shards list 49; image_formats is {"png": 60}, the records hold {"png": 49}',
        "FAIL split test: num_shards is 1, summary.json lists 0 shard(s) of it; num_records is 11, its shards list 0; "
        "classes differ from the records: class 0: 0 read, summary.json says 1; class 1: 0 read, summary.json says 1; "
        "class 2: 0 read, summary.json says 1; ...",
        "5 of 5 shards ok; 2 other check(s) failed",
    ]


def test_dropping_a_shard_with_every_total_adjusted_is_still_caught_by_the_labels(run):
    def drop(s):
        shard = _drop_last_shard(s, run)
        s["num_records"] -= shard["num_records"]
        s["splits"][shard["split"]]["num_records"] -= shard["num_records"]
        s["splits"][shard["split"]]["num_shards"] -= 1

    edit_summary(run, drop)
    code, lines, _ = call(verify.main, run)
    assert code == 1
    assert [l for l in lines if l.startswith("FAIL")] == [
        'FAIL summary.json: image_formats is {"png": 60}, the records hold {"png": 49}',
        "FAIL split test: num_records is 0, its classes add up to 11; classes differ from the records: "
        "class 0: 0 read, summary.json says 1; class 1: 0 read, summary.json says 1; class 2: 0 read, summary.json says 1; ...",
    ]


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda s: s.update(num_records=61), ["FAIL summary.json: num_records is 61, its shards list 60; num_records is 61, its splits add up to 60"]),
        (lambda s: s["splits"]["train"].update(num_records=39), [
            "FAIL summary.json: num_records is 60, its splits add up to 61",
            "FAIL split train: num_records is 39, its shards list 38; num_records is 39, its classes add up to 38",
        ]),
        (lambda s: s["splits"]["train"].update(num_shards=9), ["FAIL split train: num_shards is 9, summary.json lists 4 shard(s) of it"]),
        (lambda s: s["splits"]["train"]["classes"].update({"0": 5, "1": 4}), [
            "FAIL split train: classes differ from the records: class 0: 4 read, summary.json says 5; class 1: 5 read, summary.json says 4",
        ]),
        (lambda s: s["splits"]["test"]["classes"].update({"12": 1, "0": 0}), [
            "FAIL split test: class(es) [12] are not in label_map; classes differ from the records: "
            "class 0: 1 read, summary.json says 0; class 12: 0 read, summary.json says 1",
        ]),
        (lambda s: s.update(image_formats={"jpeg": 60}), ['FAIL summary.json: image_formats is {"jpeg": 60}, the records hold {"png": 60}']),
    ],
)
def test_edited_counts_are_caught(run, change, expected):
    edit_summary(run, change)
    code, lines, _ = call(verify.main, run)
    assert code == 1
    assert [l for l in lines if not l.startswith("ok")] == [*expected, f"6 of 6 shards ok; {len(expected)} other check(s) failed"]


def test_an_edited_feature_type_fails_every_shard(run):
    summary = edit_summary(run, lambda s: s["features"].update({"image/height": "float"}))
    code, lines, _ = call(verify.main, run)
    assert code == 1
    assert lines[:6] == [f"FAIL {s['path']}: record 0: image/height is int64, summary.json's features say float" for s in summary["shards"]]
    assert "skip split train: 38 records in 4 shard(s), 10 classes; classes not compared with the records (4 of its shards failed)" in lines


def test_shard_count_bytes_and_extra_keys(run):
    held = json.loads((run / "summary.json").read_text())["shards"][0]["num_records"]
    summary = edit_summary(run, lambda s: (s["shards"][0].update(num_records=held - 1), s["shards"][1].update(bytes=5), s["features"].pop("image/width"), s["feature_fields"].pop("image/width")))
    _, lines, _ = call(verify.main, run)
    assert lines[0] == f"FAIL {summary['shards'][0]['path']}: record 0: holds ['image/width'], which summary.json's features do not list"
    summary = edit_summary(run, lambda s: (s["features"].update({"image/width": "int64"}), s["feature_fields"].update({"image/width": "width"})))
    _, lines, _ = call(verify.main, run)
    assert lines[0] == f"FAIL {summary['shards'][0]['path']}: {held} records, summary.json says {held - 1}"
    assert lines[1] == f"FAIL {summary['shards'][1]['path']}: {(run / summary['shards'][1]['path']).stat().st_size} bytes, summary.json says 5"


def test_class_text_must_match_label_map(run):
    summary = edit_summary(run, lambda s: s["label_map"].update(drei=s["label_map"].pop("three")))
    code, lines, _ = call(verify.main, run)
    assert code == 1 and summary["label_map"]["drei"] == 7  # ids by sorted name: eight=0, five=1, ..., three=7
    with_threes = [s["path"] for s in summary["shards"] if any(r["image/class/label"] == 7 for r in load.shard_records(str(run / s["path"]), "tfrecord"))]
    failed = [l for l in lines if l.startswith("FAIL digits-")]
    assert [l.split(":")[0] for l in failed] == [f"FAIL {p}" for p in with_threes] and len(with_threes) >= 2
    assert all(l.endswith("image/class/text is 'three', label_map names class 7 'drei'") for l in failed)


def test_extra_files_must_exist_and_match(run):
    summary = json.loads((run / "summary.json").read_text())
    first, second = summary["shards"][0]["path"], summary["shards"][1]["path"]
    (run / (first + ".idx")).unlink()
    with open(run / (second + ".idx"), "a") as f:
        f.write("1 2\n")
    _, lines, _ = call(verify.main, run)
    assert lines[0] == f"FAIL {first}: {first}.idx (written beside it) is missing"
    assert lines[1] == f"FAIL {second}: DALI index {second}.idx does not match the record offsets"


def test_unlisted_shard_like_files_are_reported_and_known_files_are_not(run):
    summary = json.loads((run / "summary.json").read_text())
    shard = (run / summary["shards"][0]["path"]).read_bytes()
    (run / "digits-train.tfrecord-00007-of-00009").write_bytes(b"not even records")
    (run / "backup.bin").write_bytes(shard)
    (run / "sub").mkdir()
    (run / "sub" / "old.tfrecord.partial").write_bytes(b"")
    (run / "notes.txt").write_text("my notes")
    for known in (".hydra/config.yaml", ".hydra/hydra.yaml", "prep.log", ".prep-lock", "labels.csv"):
        (run / known).parent.mkdir(exist_ok=True)
        (run / known).write_bytes(shard)  # even holding records, prep's and Hydra's own files are not shards
    code, lines, _ = call(verify.main, run)
    assert code == 1
    assert [l for l in lines if l.startswith("FAIL")] == [
        "FAIL backup.bin: not in summary.json, but holds tfrecord records",
        f"FAIL digits-train.tfrecord-00007-of-00009: not in summary.json, but named like a shard ({TFDS})",
        "FAIL sub/old.tfrecord.partial: not in summary.json, a .partial file left by an unfinished write",
    ]
    assert lines[-1] == f"{len(summary['shards'])} of {len(summary['shards'])} shards ok; 3 other check(s) failed"


def test_summary_without_the_new_keys_still_verifies(run):
    edit_summary(run, lambda s: [s.pop("pattern")] + [shard.pop("extra_files") for shard in s["shards"]])
    code, lines, _ = call(verify.main, run)
    assert code == 0 and lines[-2] == "ok   folder: no unlisted shards"


# --- one clear line, never a traceback -----------------------------------------------------------------


def test_verify_refuses_what_is_not_a_run(run, tmp_path):
    shard = run / json.loads((run / "summary.json").read_text())["shards"][0]["path"]
    (tmp_path / "unfinished" / ".prep-manifest").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    cases = {
        shard: f"error: {shard}: a file, not a run folder; give the folder that holds summary.json",
        tmp_path / "empty": f"error: {tmp_path / 'empty'}: no summary.json; not a finished prep run",
        tmp_path / "unfinished": f"error: {tmp_path / 'unfinished'}: an unfinished run (no summary.json); finish it with resume=true",
        tmp_path / "nowhere": f"error: {tmp_path / 'nowhere'}: no such folder",
    }
    for target, message in cases.items():
        assert call(verify.main, target) == (1, [], message + "\n")
    for target in (tmp_path / "empty", tmp_path / "unfinished"):
        assert call(inspect.main, target) == (1, [], cases[target] + "\n")
    nowhere = tmp_path / "nowhere"
    assert call(inspect.main, nowhere) == (1, [], f"error: {nowhere}: no such run directory or shard file\n")


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"dataset": "digits", "format": "tfrec', "not valid JSON (line 1, column 33: Unterminated string starting at); truncated or edited by hand?"),
        ("[1, 2]", "expected a JSON object, got [1, 2]"),
        ("\x80{}", "not UTF-8 text; is it a summary.json?"),
    ],
)
def test_unreadable_summary_text_is_one_line(run, text, message):
    (run / "summary.json").write_bytes(text.encode("latin-1"))
    assert call(verify.main, run) == (1, [], f"error: {run / 'summary.json'}: {message}\n")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("shards"), "shards: missing"),
        (lambda s: s.update(num_records="60"), 'num_records: expected a whole number >= 0, got "60"'),
        (lambda s: s.update(num_records=-1), "num_records: expected a whole number >= 0, got -1"),
        (lambda s: s.update(num_records=True), "num_records: expected a whole number >= 0, got true"),
        (lambda s: s.update(format="parquet"), """format: "parquet" is not one of ['tfrecord', 'ofrecord', 'arrayrecord', 'webdataset']"""),
        (lambda s: s.update(compression=["gzip"]), """compression: ["gzip"] is not one of [None, 'gzip', 'zlib']"""),
        (lambda s: s["shards"][1].update(path="../x"), "shards[1].path: '../x' leaves the run folder; shard paths are relative to it"),
        (lambda s: s["shards"][1].update(path="/etc/passwd"), "shards[1].path: '/etc/passwd' leaves the run folder; shard paths are relative to it"),
        (lambda s: s["shards"][1].update(path="a/../b"), "shards[1].path: 'a/../b' is not a plain relative path (like 'train/part-0')"),
        (lambda s: s["shards"][1].update(path=s["shards"][0]["path"]), "is listed twice"),
        (lambda s: s["shards"][0].update(split="nope"), "shards[0].split: 'nope' is not one of the splits ['test', 'train', 'validation']"),
        (lambda s: s["shards"][0].update(sha256="abc"), 'shards[0].sha256: "abc" is not a sha256 (64 lowercase hex digits)'),
        (lambda s: s["shards"][0].update(extra_files=["/tmp/x.idx"]), "shards[0].extra_files[0]: '/tmp/x.idx' leaves the run folder"),
        (lambda s: s["shards"][0].pop("bytes"), "shards[0].bytes: missing"),
        (lambda s: s["splits"]["train"]["classes"].update({"03": 1}), "splits.train.classes: '03' is not a class id"),
        (lambda s: s["splits"]["train"].update(classes=[]), "splits.train.classes: expected an object, got []"),
        (lambda s: s["features"].update({"image/encoded": "int32"}), """features.image/encoded: "int32" is not one of ['bytes', 'float', 'int64']"""),
        (lambda s: s["feature_fields"].update(extra="label"), "feature_fields: lists other keys than features (differing: ['extra'])"),
        (lambda s: s["label_map"].update(drei=7), "label_map.drei: class id 7 is already 'three'"),
        (lambda s: s["feature_fields"].update({"image/height": "text"}), "feature_fields.image/height: text cannot be stored as int64 (features.image/height)"),
        (lambda s: s.update(pattern="{name}-{index}"), "pattern: '{name}-{index}' has unknown field(s) ['name']; shard names use"),
        (lambda s: s.update(pattern="{index"), "pattern: '{index': expected '}' before end of string"),
    ],
)
def test_invalid_summary_names_the_file_and_key(run, change, message):
    edit_summary(run, change)
    path = run / "summary.json"
    code, lines, err = call(verify.main, run)
    assert (code, lines) == (1, []) and err.startswith(f"error: {path}: ") and message in err and err.count("\n") == 1
    assert call(inspect.main, run)[2] == err
    with pytest.raises(PrepError) as caught:
        next(load.records(str(run)))
    assert f"error: {caught.value}\n" == err


def test_load_records_names_a_missing_shard(run):
    shard = json.loads((run / "summary.json").read_text())["shards"][-1]["path"]
    (run / shard).unlink()
    with pytest.raises(PrepError, match=f"^{run / shard}: cannot read: No such file or directory$"):
        list(load.records(str(run)))


def test_inspect_refuses_files_that_are_not_shards(tmp_path, photos, run):
    files = {
        "random.bin": bytes(range(7, 250)) * 3,
        "photo.jpg": jpeg_bytes(crop(photos, 1)),
        "empty": b"",
        "zeros": b"\x00" * 20,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    expected = {
        "random.bin": "not a record shard (record 0 at byte 0: truncated payload (721 of 1012478732780767239 bytes))",
        "photo.jpg": "a jpeg image, not a record shard prep writes (TFRecord, OFRecord, ArrayRecord, WebDataset tar)",
        "empty": "an empty file, not a shard",
        "zeros": "record 2 at byte 16: truncated length",  # two empty OFRecords, then 4 bytes
    }
    for name, message in expected.items():
        assert call(inspect.main, tmp_path / name) == (1, [], f"error: {tmp_path / name}: {message}\n")
    labels = run / "labels.csv"  # inside a run: read as that run's format
    assert call(inspect.main, labels) == (1, [], f"error: {labels}: not a tfrecord shard (record 0 at byte 0: length CRC mismatch)\n")


def test_inspect_prints_a_shard_with_its_class_names(run):
    summary = json.loads((run / "summary.json").read_text())
    code, lines, _ = call(inspect.main, run / summary["shards"][0]["path"], "-n", "1")
    assert code == 0 and lines[1] == "record 0:"
    label = next(l for l in lines if l.startswith("  image/class/label: "))
    number = int(label.split(": ")[1].split()[0])
    names = {i: name for name, i in summary["label_map"].items()}
    assert label == f"  image/class/label: {number} ({names[number]})" and names[number] in NAMES


# --- properties: edited summaries ----------------------------------------------------------------------

_json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8),
              st.sampled_from(["../x", "/etc/passwd", "a//b", ".", "train", "tfrecord", "gzip", "label", "int64", "0"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)


def _paths(value, prefix=()):
    """Every key path into a JSON value (dict keys and list indexes)."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _paths(child, prefix + (key,))


def _at(value, path):
    for key in path:
        value = value[key]
    return value


@st.composite
def mutated_summary_text(draw, summary: dict) -> str:
    """A valid summary with keys dropped, values replaced or nudged, and maybe its text cut short."""
    summary = json.loads(json.dumps(summary))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(summary) if p]
        numbers = [p for p in paths if type(_at(summary, p)) is int]
        how = draw(st.sampled_from(["drop", "replace", "nudge", "nudge"] if numbers else ["drop", "replace"]))
        path = draw(st.sampled_from(numbers if how == "nudge" else paths))
        parent = _at(summary, path[:-1])
        if how == "drop":
            del parent[path[-1]]
        elif how == "nudge":  # still a valid summary, but one that no longer says what the shards hold
            parent[path[-1]] = max(0, parent[path[-1]] + draw(st.sampled_from([-1, 1, 2, 10**6])))
        else:
            parent[path[-1]] = draw(_json_value)
    text = json.dumps(summary, indent=2)
    if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


def _read_back(run: Path) -> tuple[int, dict[str, Counter]]:
    """Records and labels per split as prep.load reads them (the shards' own word)."""
    summary = summaries.load(str(run))
    label_key = next(k for k, f in summary["feature_fields"].items() if f == "label")
    per_split = {name: Counter(r[label_key] for r in load.records(str(run), name)) for name in summary["splits"]}
    return sum(sum(c.values()) for c in per_split.values()), per_split


@pytest.fixture(scope="module")
def pristine(named_run) -> str:
    return (named_run / "summary.json").read_text()


@HYPOTHESIS
@given(data=st.data())
def test_any_edit_of_summary_json_gives_ok_only_when_it_is_true(named_run, pristine, data):
    text = data.draw(mutated_summary_text(json.loads(pristine)))
    path = named_run / "summary.json"
    try:
        path.write_text(text)
        code, lines, err = call(verify.main, named_run)
        assert code in (0, 1)
        failed = any(line.startswith("FAIL") for line in lines)
        assert code == (1 if err or failed else 0)
        event("refused" if err else "verify failed" if failed else "verify ok")
        if err:
            assert lines == [] and err.startswith(f"error: {named_run}") and err.count("\n") == 1
        if code == 0:  # "all ok" must be true: the summary's numbers are what the shards hold
            summary = json.loads(text)
            total, per_split = _read_back(named_run)
            assert total == summary["num_records"]
            assert {n: {str(k): v for k, v in c.items()} for n, c in per_split.items()} == {
                n: {k: v for k, v in s["classes"].items() if v} for n, s in summary["splits"].items()
            }
        icode, _, ierr = call(inspect.main, named_run, "-n", "2")
        assert icode in (0, 1) and (icode == 0) == (ierr == "")
        try:
            for _ in load.records(str(named_run)):
                pass
        except PrepError as error:
            assert str(error)
    finally:
        path.write_text(pristine)


# --- properties: damaged shards ------------------------------------------------------------------------


@st.composite
def damaged_bytes(draw, data: bytes) -> bytes:
    """A shard's bytes cut short, bit-flipped, spliced, given a huge length field (with or without its CRC), or replaced."""
    how = draw(st.sampled_from(["cut", "flip", "splice", "huge", "random"]))
    if how == "random":
        return draw(st.binary(max_size=300))
    at = draw(st.integers(0, len(data) - 1))
    if how == "cut":
        return data[:at]
    if how == "flip":
        return data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
    if how == "splice":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    from prep.formats import tfrecord

    length = struct.pack("<Q", draw(st.sampled_from([2**63, 2**64 - 1, 2**62, 10**12])))
    crc = struct.pack("<I", tfrecord.masked_crc(length) if draw(st.booleans()) else 0)
    return length + crc + data[12:] if draw(st.booleans()) else data[:at] + length + crc + data[at:]


@pytest.mark.parametrize("which", ["named", "of"])
@HYPOTHESIS
@given(data=st.data())
def test_damaged_shards_fail_verify_and_never_raise(request, which, data):
    run = request.getfixturevalue(f"{which}_run")
    summary = json.loads((run / "summary.json").read_text())
    shard = run / data.draw(st.sampled_from(summary["shards"]))["path"]
    original = shard.read_bytes()
    damaged = data.draw(damaged_bytes(original))
    try:
        shard.write_bytes(damaged)
        code, lines, err = call(verify.main, run)
        assert err == "" and code == (0 if damaged == original else 1)
        assert f"FAIL {shard.relative_to(run)}: " in "\n".join(lines) or damaged == original
        for target in (shard, run):
            icode, _, ierr = call(inspect.main, target, "-n", "2")
            assert icode in (0, 1) and (icode == 1) == ierr.startswith("error: ")
        try:
            for _ in load.records(str(run)):
                pass
        except PrepError as error:
            assert str(error)
    finally:
        shard.write_bytes(original)
