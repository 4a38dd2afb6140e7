"""summary.json: what a run wrote, written last so that its presence means the run finished."""

from __future__ import annotations

import csv
import errno
import io
import os
import json
import posixpath
import re
import string
from collections import Counter

from prep import __version__
from prep.core import nofollow, storage
from prep.core.errors import ConfigError, InputError, WriteError
from prep.core.values import ShardResult, merged_shapes, merged_sizes
from prep.runfiles.names import LABELS_CSV, MANIFEST, REPORT, SUMMARY
from prep.writers import FIELD_TYPES, FORMATS

KINDS = {name: writer.types for name, writer in FORMATS.items()}
COMPRESSIONS = (None, "gzip", "zlib")
PATTERN_FIELDS = ("dataset", "split", "index", "number", "count")
# Class ids are stored as int64 (TFRecord's and OFRecord's widest integer): every one of them is a class.
CLASS_ID_MIN, CLASS_ID_MAX = -(2**63), 2**63 - 1
_CLASS_KEY = re.compile(r"0|-?[1-9][0-9]{0,18}")  # int64 in decimal: at most 19 digits, no leading zero or "-0"


def build(*, name: str, writer, listing, splits: list[str], results: list[ShardResult], seconds: float, run_info: dict, skipped=None) -> dict:
    """skipped: the images left out before any shard (label-file problems, the content scan); listing.skipped if None."""
    written = [r for r in results if r.num_records]  # a shard whose images were all skipped is not written
    per_split: dict[str, dict] = {}
    for split in splits:
        counts: Counter = Counter()
        for result in results:
            if result.split == split:
                counts.update(result.class_counts)
        per_split[split] = {
            "num_records": sum(counts.values()),
            "num_shards": sum(1 for r in written if r.split == split),
            "classes": {str(label): counts[label] for label in sorted(counts)},
        }
    formats: Counter = Counter()
    for result in results:
        formats.update(result.formats)
    before = listing.skipped if skipped is None else skipped
    skipped = [s.as_dict() for s in before] + [s.as_dict() for r in results for s in r.skipped]
    num_records = sum(r.num_records for r in results)
    return {
        "dataset": name,
        "format": writer.format,
        "compression": writer.compression,
        "pattern": writer.pattern,
        "num_records": num_records,
        "splits": per_split,
        "shards": [
            {
                "path": r.path, "split": r.split, "num_records": r.num_records, "bytes": r.bytes, "sha256": r.sha256, "extra_files": r.extra_files,
                "class_counts": {str(label): r.class_counts[label] for label in sorted(r.class_counts)},
            }
            for r in written
        ],
        "label_map": listing.label_map,
        "features": writer.feature_types(listing.class_names is not None),
        "feature_fields": writer.feature_fields(listing.class_names is not None),
        "image_formats": dict(sorted(formats.items())),
        "image_shapes": merged_shapes(r.shapes for r in written),
        "image_sizes": merged_sizes(r.sizes for r in written),
        **_exif(run_info.get("encoder", {}), results),
        "metadata_files": [],  # filled in by the pipeline once the writer's run-level files are written
        "skipped": skipped,
        "unlabelled": {"count": listing.unlabelled_count, "examples": listing.unlabelled[:20]},
        "ignored": {"count": len(listing.ignored), "examples": listing.ignored[:20]},
        "seconds": round(seconds, 3),
        "records_per_second": round(num_records / seconds, 1) if seconds > 0 else 0.0,
        "version": __version__,
        **run_info,
        **_decoded(run_info.get("encoder", {}), results),
    }


def _exif(encoder: dict, results: list[ShardResult]) -> dict:
    """summary.json's `exif`: the encoder's mode, the written images with an EXIF orientation other than 1, and how
    many of them were stored turned upright. Absent for an encoder without the setting."""
    if "exif" not in encoder:
        return {}
    oriented = sum(r.oriented for r in results)
    return {"exif": {"mode": encoder["exif"], "oriented": oriented, "applied": sum(r.reoriented for r in results)}}


def _decoded(encoder: dict, results: list[ShardResult]) -> dict:
    """summary.json's `encoder` with `decoded_at`: how many written images libjpeg decoded at 1/1, 1/2, 1/4 and
    1/8 of their size (encoder.reduce=dct). Nothing added for an encoder without the setting."""
    if "reduce" not in encoder:
        return {}
    counts: Counter = Counter()
    for result in results:
        counts.update(result.reductions)
    return {"encoder": {**encoder, "decoded_at": {f"1/{d}": counts[d] for d in (1, 2, 4, 8)}}}


def _write_atomically(path: str, text: str, root: str) -> None:
    try:
        storage.write_bytes(path, text.encode("utf-8"), root=root)
    except OSError as err:
        raise WriteError(f"{path}: cannot write: {err.strerror or err}") from None


def write(output_dir: str, summary: dict) -> None:
    path = storage.join(output_dir, SUMMARY)
    try:
        storage.write_json(path, summary, root=output_dir)
    except OSError as err:
        raise WriteError(f"{path}: cannot write: {err.strerror or err}") from None


def write_labels_csv(output_dir: str, summary: dict, class_names: list[str] | None) -> None:
    """labels.csv beside the shards (as image2tfrecords wrote it): class id, class name, records per split.

    Written by the csv module, which reads every name back exactly. It quotes a name holding a comma, quote
    or newline, but not one holding a bare \\r (with "\\n" line ends), another control character or spaces at
    its ends: such a name is quoted here explicitly (QUOTE_NONNUMERIC on its row quotes the name alone).
    """
    splits = list(summary["splits"])
    ids = sorted({int(label) for split in summary["splits"].values() for label in split["classes"]} | set(range(len(class_names or []))))
    out = io.StringIO()
    plain = csv.writer(out, lineterminator="\n")
    quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    plain.writerow(["class_id", "class_name", *splits])
    for label in ids:
        name = class_names[label] if class_names else str(label)
        counts = [summary["splits"][split]["classes"].get(str(label), 0) for split in splits]
        needs_quotes = not name.isprintable() or name != name.strip()
        (quoted if needs_quotes else plain).writerow([label, name, *counts])
    _write_atomically(storage.join(output_dir, LABELS_CSV), out.getvalue(), output_dir)


def _read(output_dir: str) -> bytes:
    """summary.json's bytes; in a local folder never through a link (a run folder may come from someone else)."""
    path = storage.join(output_dir, SUMMARY)
    if storage.is_url(output_dir):
        return storage.read_bytes(path)
    fd = nofollow.open_file(storage.local(output_dir), [SUMMARY], why=": prep reads only files inside the run folder")
    with os.fdopen(fd, "rb") as f:
        if os.fstat(fd).st_size > storage.MAX_READ_BYTES:
            raise OSError(errno.EFBIG, f"larger than {storage.MAX_READ_BYTES:,} bytes", path)
        return f.read()


def load(output_dir: str) -> dict:
    """The summary.json of a finished run, checked by validate(), read without following a link; PrepError names
    the file and what is wrong."""
    path = storage.join(output_dir, SUMMARY)
    if storage.isfile(output_dir):
        raise ConfigError(f"{output_dir}: a file, not a run folder; give the folder that holds {SUMMARY}")
    if not storage.isdir(output_dir):
        raise ConfigError(f"{output_dir}: no such folder")
    try:
        data = _read(output_dir)
    except FileNotFoundError:
        manifest = storage.join(output_dir, MANIFEST)
        if storage.exists(manifest) if storage.is_url(manifest) else os.path.lexists(manifest):
            raise ConfigError(f"{output_dir}: an unfinished run (no {SUMMARY}); finish it with resume=true") from None
        raise ConfigError(f"{output_dir}: no {SUMMARY}; not a finished prep run") from None
    except nofollow.LinkError as err:
        raise InputError(f"{path}: {err.strerror}") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        summary = json.loads(data)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; is it a summary.json?") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); truncated or edited by hand?") from None
    except (RecursionError, ValueError) as err:  # nesting too deep, or a number of over 4300 digits
        raise InputError(f"{path}: not a summary.json ({str(err) or type(err).__name__})") from None
    return validate(summary, path)


class _Checker:
    """Type and range checks that raise InputError naming the file and the key path (shards[2].num_records)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, problem: str):
        raise InputError(f"{self.where}: {key}: {problem}")

    def obj(self, value, key: str) -> dict:
        if not isinstance(value, dict):
            self.fail(key, f"expected an object, got {_shown(value)}")
        return value

    def text(self, value, key: str) -> str:
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_shown(value)}")
        return value

    def count(self, value, key: str) -> int:
        # bool is an int in Python, but `true` is no count in JSON.
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(key, f"expected a whole number >= 0, got {_shown(value)}")
        return value

    def class_id(self, value, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not CLASS_ID_MIN <= value <= CLASS_ID_MAX:
            self.fail(key, f"expected a class id (a whole number in {CLASS_ID_MIN}..{CLASS_ID_MAX}), got {_shown(value)}")
        return value

    def choice(self, value, key: str, choices) -> None:
        choices = list(choices)  # a list, so an unhashable value is simply not in it
        if isinstance(value, bool) or value not in choices:
            self.fail(key, f"{_shown(value)} is not one of {choices}")

    def relative_path(self, value, key: str) -> str:
        """A path inside the run folder: relative, normalized, no `..`; reading it never leaves the folder."""
        path = self.text(value, key)
        if path in ("", ".") or "\0" in path or posixpath.normpath(path) != path:
            self.fail(key, f"{path!r} is not a plain relative path (like 'train/part-0')")
        if path.startswith("/") or path == ".." or path.startswith("../") or "://" in path:
            self.fail(key, f"{path!r} leaves the run folder; shard paths are relative to it")
        return path


def _shown(value) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list, str, int, float, bool, type(None))) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate(summary, where: str = SUMMARY) -> dict:
    """Check what the tools (verify, inspect, load) rely on in a summary: keys, types, ranges, safe paths.

    Consistency between the numbers (totals, per split, per class) is verify's job, which reports every
    mismatch; here a summary that cannot even be read that far is refused with one InputError.
    `pattern`, `extra_files`, `label_map` and `image_formats` may be absent (older runs).
    """
    c = _Checker(where)
    if not isinstance(summary, dict):
        raise InputError(f"{where}: expected a JSON object, got {_shown(summary)}")
    for key in ("dataset", "format", "num_records", "splits", "shards", "features", "feature_fields"):
        if key not in summary:
            c.fail(key, "missing")
    c.text(summary["dataset"], "dataset")
    if len(summary["dataset"]) > MAX_NAME:
        c.fail("dataset", f"a name of {len(summary['dataset']):,} characters; a dataset name is part of file names (at most {MAX_NAME})")
    c.choice(summary["format"], "format", KINDS)
    c.choice(summary.get("compression"), "compression", COMPRESSIONS if summary["format"] == "tfrecord" else (None,))
    c.count(summary["num_records"], "num_records")
    _check_splits(c, summary["splits"])
    _check_shards(c, summary["shards"], summary["splits"])
    _check_features(c, summary)
    label_map = c.obj(summary.get("label_map", {}), "label_map")
    names_of: dict[int, str] = {}
    for name, label in label_map.items():
        c.class_id(label, f"label_map.{name}")
        if label in names_of:
            c.fail(f"label_map.{name}", f"class id {label} is already {names_of[label]!r}")
        names_of[label] = name
    for name, count in c.obj(summary.get("image_formats", {}), "image_formats").items():
        c.count(count, f"image_formats.{name}")
    if "pattern" in summary:
        _check_pattern(c, summary["pattern"])
    _check_metadata_files(c, summary.get("metadata_files", []), {s["path"] for s in summary["shards"]})
    return summary


def _check_metadata_files(c: _Checker, files, shards: set[str]) -> None:
    if not isinstance(files, list):
        c.fail("metadata_files", f"expected a list, got {_shown(files)}")
    for i, entry in enumerate(files):
        key = f"metadata_files[{i}]"
        c.obj(entry, key)
        for field in ("path", "bytes", "sha256"):
            if field not in entry:
                c.fail(f"{key}.{field}", "missing")
        path = c.relative_path(entry["path"], f"{key}.path")
        if path in shards or path in (SUMMARY, LABELS_CSV, REPORT):
            c.fail(f"{key}.path", f"{path!r} is also a shard or prep's own file")
        c.count(entry["bytes"], f"{key}.bytes")
        if not re.fullmatch(r"[0-9a-f]{64}", c.text(entry["sha256"], f"{key}.sha256")):
            c.fail(f"{key}.sha256", f"{_shown(entry['sha256'])} is not a sha256 (64 lowercase hex digits)")


# A run has at most train, validation and test (or one split of its own name): a summary listing more is not a
# run's, and the tools that draw every split (report.html) must not be made to draw 100,000.
MAX_SPLITS = 16
MAX_NAME = 255  # the dataset name is part of shard file names, whose parts file systems cap at 255 bytes


def _check_splits(c: _Checker, splits) -> None:
    if isinstance(splits, dict) and len(splits) > MAX_SPLITS:
        c.fail("splits", f"{len(splits):,} splits; a run has at most train, validation and test")
    for name, split in c.obj(splits, "splits").items():
        key = f"splits.{name}"
        c.obj(split, key)
        for field in ("num_records", "num_shards", "classes"):
            if field not in split:
                c.fail(f"{key}.{field}", "missing")
        c.count(split["num_records"], f"{key}.num_records")
        c.count(split["num_shards"], f"{key}.num_shards")
        for label, count in c.obj(split["classes"], f"{key}.classes").items():
            if not _CLASS_KEY.fullmatch(label) or not CLASS_ID_MIN <= int(label) <= CLASS_ID_MAX:
                c.fail(f"{key}.classes", f"{label!r} is not a class id (classes map ids like \"3\", {CLASS_ID_MIN}..{CLASS_ID_MAX}, to counts)")
            c.count(count, f"{key}.classes.{label}")


def _check_shards(c: _Checker, shards, splits: dict) -> None:
    if not isinstance(shards, list):
        c.fail("shards", f"expected a list, got {_shown(shards)}")
    seen: set[str] = set()
    for i, shard in enumerate(shards):
        key = f"shards[{i}]"
        c.obj(shard, key)
        for field in ("path", "split", "num_records", "bytes", "sha256"):
            if field not in shard:
                c.fail(f"{key}.{field}", "missing")
        path = c.relative_path(shard["path"], f"{key}.path")
        if path in seen:
            c.fail(f"{key}.path", f"{path!r} is listed twice")
        seen.add(path)
        if c.text(shard["split"], f"{key}.split") not in splits:
            c.fail(f"{key}.split", f"{shard['split']!r} is not one of the splits {sorted(splits)}")
        c.count(shard["num_records"], f"{key}.num_records")
        c.count(shard["bytes"], f"{key}.bytes")
        if not re.fullmatch(r"[0-9a-f]{64}", c.text(shard["sha256"], f"{key}.sha256")):
            c.fail(f"{key}.sha256", f"{_shown(shard['sha256'])} is not a sha256 (64 lowercase hex digits)")
        extra = shard.get("extra_files", [])
        if not isinstance(extra, list):
            c.fail(f"{key}.extra_files", f"expected a list, got {_shown(extra)}")
        for j, name in enumerate(extra):
            c.relative_path(name, f"{key}.extra_files[{j}]")


def _check_features(c: _Checker, summary: dict) -> None:
    features = c.obj(summary["features"], "features")
    kinds = KINDS[summary["format"]]
    for key, kind in features.items():
        c.choice(kind, f"features.{key}", kinds)
    fields = c.obj(summary["feature_fields"], "feature_fields")
    for key, field in fields.items():
        c.choice(field, f"feature_fields.{key}", tuple(FIELD_TYPES))
        if key in features and (FIELD_TYPES[field] == "bytes") != (features[key] == "bytes"):
            c.fail(f"feature_fields.{key}", f"{field} cannot be stored as {features[key]} (features.{key})")
    # The writer lists the same keys in both; a key in one only would hide a feature from verify's checks.
    if set(fields) != set(features):
        odd = sorted(set(fields) ^ set(features))
        c.fail("feature_fields", f"lists other keys than features (differing: {odd})")


def _check_pattern(c: _Checker, pattern) -> None:
    c.text(pattern, "pattern")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
    except ValueError as err:
        c.fail("pattern", f"{pattern!r}: {err}")
    unknown = {re.split(r"[.\[]", name)[0] for name in fields} - set(PATTERN_FIELDS)
    if unknown:
        c.fail("pattern", f"{pattern!r} has unknown field(s) {sorted(unknown)}; shard names use {list(PATTERN_FIELDS)}")
    if pattern.startswith("/") or ".." in pattern.split("/"):
        c.fail("pattern", f"{pattern!r} leaves the run folder")
