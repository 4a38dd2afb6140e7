"""`prep-verify OUTPUT_DIR [--decode [--max-pixels N]]` (or `python -m prep.verify`): check that summary.json says exactly what the shards hold.

Re-reads every shard summary.json lists: framing and CRCs (TFRecord), record counts, sizes, sha256, that
every record holds exactly the features summary.json lists with their types, that class texts match
label_map, the extra files beside each shard (DALI index), and with --decode that every image decodes
(its header's size checked against --max-pixels first). Then checks summary.json's numbers against each
other and against the labels read (totals, shards and classes per split), and looks through the folder
for what a finished run does not hold: files that look like shards (named like one, holding records of
any format and compression, or .partial) but are not listed, symlinks, FIFOs, sockets and devices, an
unfinished run's manifest, and files in .hydra/ other than Hydra's three. Only regular files are opened, and
never through a symbolic link (a listed shard, index or metadata file that is one, or that lies in a folder
that is one, fails).
One line per shard, then the totals, one line per split and the folder; exit status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import posixpath
import re
import signal
import stat
import string
import sys
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlparse

from prep import encoders
from prep.core import storage
from prep.core.errors import EncodeError, PrepError
from prep.formats import arrayrecord, ofrecord, protowire, tar, tfrecord, wds
from prep.formats.images import read_header
from prep.load import arrayrecord_payloads, load_summary, open_in_run, read_in_run, read_problem, sniff_records
from prep.runfiles import summary as summaries
from prep.runfiles.names import HYDRA, LABELS_CSV, LOCK, LOG, MANIFEST, PLAN, REPORT, SUMMARY

# What a run folder holds besides its shards (top level only): prep's own files, and Hydra's folder with
# the three files prep saves there (runlog.save_config).
KNOWN_FILES = {SUMMARY, LABELS_CSV, REPORT, LOG, LOCK, PLAN}
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


class _HashingReader:
    """Hashes the file's bytes as the record reader pulls them, so each shard is read once."""

    def __init__(self, f) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Whatever the record reader (or the decompressor) left unread, in bounded pieces."""
        while self.read(1 << 20):
            pass


class RecordRules:
    """What every record of a run must hold, from its summary: the features and their types, one value
    each (as prep writes them), a whole-number label, and a class text equal to label_map's name."""

    def __init__(self, summary: dict) -> None:
        self.features = summary["features"]
        key = {f: k for k, f in summary.get("feature_fields", {}).items()}
        self.label_key, self.text_key, self.image_key = key.get("label"), key.get("text"), key.get("encoded")
        self.format_key = key.get("format")
        self.shape_keys = [key.get(f) for f in ("height", "width", "channels")]
        self.names = {label: name for name, label in summary.get("label_map", {}).items()}
        self.raw = set(summary.get("image_formats", {})) == {"raw"}

    def problem(self, record: dict[str, tuple[str, list]]) -> str | None:
        missing = sorted(set(self.features) - set(record))
        if missing:
            return f"lacks {missing}"
        extra = sorted(set(record) - set(self.features))
        if extra:
            return f"holds {extra}, which summary.json's features do not list"
        for key, (kind, values) in sorted(record.items()):
            if kind != self.features[key]:
                return f"{key} is {kind}, summary.json's features say {self.features[key]}"
            if len(values) != 1:
                return f"{key} holds {len(values)} values, prep writes 1"
        if self.label_key is None:
            return None
        label = self.label(record)
        if label is None:
            return f"label {self.label_key} is {_shown(record[self.label_key][1][0])}, not a whole number"
        if self.text_key is not None:
            text = record[self.text_key][1][0]
            if label not in self.names:
                return f"{self.text_key} is {_shown(text)} but label_map has no class {label}"
            if text != self.names[label].encode():
                return f"{self.text_key} is {_shown(text)}, label_map names class {label} {self.names[label]!r}"
        return None

    def label(self, record: dict[str, tuple[str, list]]) -> int | None:
        value = record[self.label_key][1][0]
        if isinstance(value, float) and value.is_integer():  # a label stored as float
            return int(value)
        return value if isinstance(value, int) else None

    def decode_problem(self, record: dict[str, tuple[str, list]], max_pixels: int = encoders.DEFAULT_MAX_PIXELS) -> str | None:
        data = record[self.image_key][1][0]
        if not isinstance(data, bytes) or not data:
            return "image is empty"
        if self.raw:
            shape = [record[k][1][0] if k in record else None for k in self.shape_keys]
            if not all(isinstance(n, int) and n > 0 for n in shape) or len(data) != shape[0] * shape[1] * shape[2]:
                return f"raw pixels of {len(data)} bytes do not match height x width x channels {shape}"
            return None
        # The header's size first: a decoder allocates the whole image before it reads a pixel.
        try:
            info = read_header(data)
        except EncodeError as err:
            return f"image does not decode ({err})"
        if info.width * info.height > max_pixels:
            return f"{info.width}x{info.height} is over max_pixels={max_pixels} (raise --max-pixels to decode it)"
        try:
            pixels = encoders.decode(data, None, max_pixels)  # the stored pixels: EXIF orientation is not applied
        except EncodeError as err:
            return f"image does not decode ({err})"
        height_key, width_key = self.shape_keys[:2]
        stated = [record[k][1][0] if k in record else None for k in (height_key, width_key)]
        if all(isinstance(n, int) for n in stated) and list(pixels.shape[:2]) != stated:
            return f"image decodes to {pixels.shape[1]}x{pixels.shape[0]} pixels, the record says {stated[1]}x{stated[0]} ({width_key}, {height_key})"
        return None


def _shown(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class ShardCheck:
    problem: str | None
    labels: Counter = field(default_factory=Counter)  # class id -> records read
    formats: Counter = field(default_factory=Counter)  # stored image format -> records read


def _records(stream, summary: dict, name: str, path: str, output_dir: str):
    if summary["format"] == "arrayrecord":
        stream.drain()  # the file's bytes are hashed here; the array_record library reads the records by name
        return enumerate(arrayrecord_payloads(path, output_dir)), tfrecord.decode_example
    if summary["format"] == "tfrecord":
        return tfrecord.read_records(tfrecord.decompressing(stream, summary.get("compression")), name), tfrecord.decode_example
    if summary["format"] == "webdataset":  # a tar: a record is a sample (image, cls, json.<field>)
        return wds.read_samples(stream, name), wds.decode_sample
    return ofrecord.read_records(stream, name), ofrecord.decode_record


def check_shard(
    output_dir: str, shard: dict, summary: dict, decode: bool = False, rules: RecordRules | None = None,
    max_pixels: int = encoders.DEFAULT_MAX_PIXELS,
) -> ShardCheck:
    """Read one shard whole: its problem (None when it is as the summary says) and the labels it holds."""
    rules = rules or RecordRules(summary)
    path = storage.join(output_dir, shard["path"])
    labels: Counter = Counter()
    formats: Counter = Counter()
    frames = []  # (offset, framed size) of every record, for the DALI index
    count = 0
    if not storage.is_url(path) and os.path.islink(path):
        # A run writes its shards as files: a symlink in a shard's place reads something outside the run.
        return ShardCheck(f"a symlink to {os.path.realpath(path)}, not the shard the run wrote")
    try:
        with open_in_run(output_dir, shard["path"]) as f:
            reader = _HashingReader(f)
            records, decode_record = _records(reader, summary, shard["path"], path, output_dir)
            for offset, payload in records:
                frames.append(f"{offset} {16 + len(payload)}")
                record = decode_record(payload)
                problem = rules.problem(record) or (rules.decode_problem(record, max_pixels) if decode else None)
                if problem:
                    return ShardCheck(f"record {count}: {problem}")
                if rules.label_key is not None:
                    labels[rules.label(record)] += 1
                if rules.format_key is not None:
                    formats[record[rules.format_key][1][0].decode("utf-8", "replace")] += 1
                count += 1
            reader.drain()
    except FileNotFoundError:
        return ShardCheck("missing")
    except OSError as err:  # a folder where the shard should be, a symlinked folder on its way, no permission, ...
        return ShardCheck(read_problem(err))
    except (tfrecord.RecordError, ofrecord.RecordError, arrayrecord.RecordError, protowire.WireError, tar.TarError) as err:
        return ShardCheck(str(err).removeprefix(path + ": ").removeprefix(shard["path"] + ": "))
    except PrepError as err:  # the array_record library's file, opened by name, cannot be opened (InputError)
        return ShardCheck(str(err).removeprefix(path + ": "))
    if count != shard["num_records"]:
        problem = f"{count} records, summary.json says {shard['num_records']}"
    elif reader.size != shard["bytes"]:
        problem = f"{reader.size} bytes, summary.json says {shard['bytes']}"
    elif reader.sha256.hexdigest() != shard["sha256"]:
        problem = "sha256 differs from summary.json"
    else:
        problem = _extra_files_problem(output_dir, shard, frames)
    return ShardCheck(problem, labels, formats)


def _extra_files(output_dir: str, shard: dict) -> list[str]:
    if "extra_files" in shard:
        return shard["extra_files"]
    # Summaries written before extra_files: the DALI index is the one file written beside a shard.
    index = shard["path"] + ".idx"
    return [index] if storage.exists(storage.join(output_dir, index)) else []


def _extra_files_problem(output_dir: str, shard: dict, frames: list[str]) -> str | None:
    """The files written beside a shard: each a regular file of the run folder (never read through a link), a
    DALI index read up to the size its lines can have and equal to the record offsets."""
    limit = sum(len(frame) + 2 for frame in frames)  # "offset size" and a line end (\r\n at most) per record
    for name in _extra_files(output_dir, shard):
        try:
            if name.endswith(".idx"):
                data = read_in_run(output_dir, name, limit)
            else:
                open_in_run(output_dir, name).close()  # there, a regular file, not a link; its bytes are not checked
                continue
        except FileNotFoundError:
            return f"{name} (written beside it) is missing"
        except OSError as err:
            if err.errno == errno.EFBIG:
                return f"DALI index {name} does not match the record offsets (it is longer than they are)"
            return f"{name} (written beside it): {read_problem(err)}"
        if data.decode("utf-8", "replace").splitlines() != frames:
            return f"DALI index {name} does not match the record offsets"
    return None


def verify_shard(output_dir: str, shard: dict, summary: dict, decode: bool = False, max_pixels: int = encoders.DEFAULT_MAX_PIXELS) -> str | None:
    """None when the shard is as the summary says, else what is wrong (with the record index)."""
    return check_shard(output_dir, shard, summary, decode, max_pixels=max_pixels).problem


def _totals_line(summary: dict, checks: list[ShardCheck], rules: RecordRules) -> tuple[bool, str]:
    total, shards, splits = summary["num_records"], summary["shards"], summary["splits"]
    problems = []
    in_shards = sum(s["num_records"] for s in shards)
    if in_shards != total:
        problems.append(f"num_records is {total}, its shards list {in_shards}")
    in_splits = sum(s["num_records"] for s in splits.values())
    if in_splits != total:
        problems.append(f"num_records is {total}, its splits add up to {in_splits}")
    said = {k: v for k, v in summary.get("image_formats", {}).items() if v}
    if "image_formats" in summary and rules.format_key is not None and not any(c.problem for c in checks):
        read = dict(sum((c.formats for c in checks), Counter()))
        if read != said:
            problems.append(f"image_formats is {json.dumps(said, sort_keys=True)}, the records hold {json.dumps(read, sort_keys=True)}")
    if problems:
        return False, "FAIL summary.json: " + "; ".join(problems)
    return True, f"ok   summary.json: {total} records in {len(shards)} shard(s) and {len(splits)} split(s), totals agree"


def _split_line(name: str, split: dict, summary: dict, checks: list[ShardCheck], rules: RecordRules) -> tuple[bool, str]:
    """summary.json's numbers for one split against each other and against the labels read from its shards."""
    shards = [s for s in summary["shards"] if s["split"] == name]
    classes = {int(label): count for label, count in split["classes"].items() if count}
    problems = []
    if split["num_shards"] != len(shards):
        problems.append(f"num_shards is {split['num_shards']}, summary.json lists {len(shards)} shard(s) of it")
    in_shards = sum(s["num_records"] for s in shards)
    if split["num_records"] != in_shards:
        problems.append(f"num_records is {split['num_records']}, its shards list {in_shards}")
    in_classes = sum(classes.values())
    if split["num_records"] != in_classes:
        problems.append(f"num_records is {split['num_records']}, its classes add up to {in_classes}")
    names = set(summary.get("label_map", {}).values())
    unnamed = sorted(set(classes) - names) if names else []
    if unnamed:
        problems.append(f"class(es) {unnamed} are not in label_map")
    failed = sum(1 for c in checks if c.problem)
    compared = rules.label_key is not None and not failed
    if compared:
        read = sum((c.labels for c in checks), Counter())
        differ = [f"class {k}: {read[k]} read, summary.json says {classes.get(k, 0)}" for k in sorted(set(read) | set(classes)) if read[k] != classes.get(k, 0)]
        if differ:
            problems.append("classes differ from the records: " + "; ".join(differ[:3]) + ("; ..." if len(differ) > 3 else ""))
    if problems:
        return False, f"FAIL split {name}: " + "; ".join(problems)
    said = f"{split['num_records']} records in {len(shards)} shard(s), {len(classes)} classes"
    if compared:
        return True, f"ok   split {name}: {said}, as read"
    why = f"{failed} of its shards failed" if failed else "the records hold no label"
    return True, f"skip split {name}: {said}; classes not compared with the records ({why})"


def shard_name_regex(pattern: str) -> re.Pattern:
    """The writer's shard-name pattern as a regex: numbers for {index}, {number}, {count}; any name part otherwise."""
    parts = []
    for literal, name, spec, _ in string.Formatter().parse(pattern):
        parts.append(re.escape(literal))
        if name is None:
            continue
        numeric = name in ("index", "number", "count") and re.fullmatch(r"0?\d*d?", spec or "")
        parts.append(r"\d+" if numeric else r"[^/]+")
    return re.compile("".join(parts))


def _folder_entries(output_dir: str) -> list[tuple[str, str]]:
    """Every entry below the run folder that is not a plain folder, as (relative "/"-separated path, kind):
    "file", "symlink" (to anything, never followed), "special" (FIFO, socket, device), or for a folder that
    cannot be listed "cannot list: <why>". Nothing is opened, so no entry can block or feed an endless read."""
    if storage.is_url(output_dir):  # object stores hold only objects
        return [(p, "file") for p in storage.find(output_dir)]
    found = []
    folders = [(storage.local(output_dir), "")]  # a stack, not recursion: any depth of folders is fine
    while folders:
        folder, prefix = folders.pop()
        try:
            with os.scandir(folder) as entries:
                entries = list(entries)
        except OSError as err:
            found.append((prefix.rstrip("/") or ".", f"cannot list: {err.strerror or err}"))
            continue
        for entry in entries:
            rel = prefix + entry.name
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:  # gone since the listing
                continue
            if stat.S_ISLNK(mode):
                found.append((rel, "symlink"))
            elif stat.S_ISDIR(mode):
                folders.append((entry.path, rel + "/"))
            else:
                found.append((rel, "file" if stat.S_ISREG(mode) else "special"))
    return sorted(found)


def _records_in(output_dir: str, path: str) -> str | None:
    """What records a stray file holds ("tfrecord", "gzip-compressed tfrecord", ...), trying every format and
    compression, whatever the run's own; None when its first record reads as none of them."""
    try:
        found = sniff_records(path, run_dir=output_dir)
    except OSError:  # gone, or no permission, or swapped for a link: nothing to say about its contents
        return None
    if found is None:
        return None
    fmt, compression = found
    return f"{compression}-compressed {fmt}" if compression else fmt


def unlisted_lines(output_dir: str, summary: dict) -> list[tuple[bool, str]]:
    """A FAIL line for each entry of the run folder a finished run does not hold: a file that looks like a
    shard (named like one, holding records, or .partial) but is not listed, a symlink, a FIFO, socket or
    device, an unfinished run's manifest (beside summary.json), anything in .hydra/ but Hydra's three files."""
    listed = {s["path"] for s in summary["shards"]} | {n for s in summary["shards"] for n in _extra_files(output_dir, s)}
    listed |= {m["path"] for m in summary.get("metadata_files", [])}
    named_like = shard_name_regex(summary["pattern"]) if "pattern" in summary else None
    # verify=true checks a run before its summary.json is written, while its manifest is still there.
    finished = storage.exists(storage.join(output_dir, SUMMARY))
    lines = []
    manifest_reported = False
    for rel, kind in _folder_entries(output_dir):
        top = rel.split("/", 1)[0]
        if top == MANIFEST:
            if finished and not manifest_reported:
                lines.append((False, f"FAIL {MANIFEST}: an unfinished run's manifest beside {SUMMARY}"))
            manifest_reported = True
            continue
        if rel in listed or rel in KNOWN_FILES:
            continue  # a listed file is checked with its shard; prep's own files are never read as shards
        if kind.startswith("cannot list: "):
            lines.append((False, f"FAIL {rel}: a folder that cannot be listed ({kind.removeprefix('cannot list: ')}), so unlisted shards in it would be missed"))
            continue
        if kind == "symlink" and any(path.startswith(rel + "/") for path in listed):
            lines.append((False, f"FAIL {rel}: a symlink, not followed: files in it other than the listed shards are not checked"))
            continue
        if kind == "symlink":
            lines.append((False, f"FAIL {rel}: not in summary.json (a symlink)"))
            continue
        if kind == "special":
            lines.append((False, f"FAIL {rel}: not a regular file, not in summary.json"))
            continue
        if top == HYDRA and rel.partition("/")[2] in HYDRA_FILES:
            continue
        if rel.endswith(".partial"):
            why = "a .partial file left by an unfinished write"
        elif top == HYDRA:
            why = f"in {HYDRA}/ (which holds only {', '.join(HYDRA_FILES)})"
        elif named_like is not None and named_like.fullmatch(rel):
            why = f"but named like a shard ({summary['pattern']})"
        else:
            records = _records_in(output_dir, storage.join(output_dir, rel))
            if records is None:
                continue
            why = f"but holds {records} records"
        lines.append((False, f"FAIL {rel}: not in summary.json, {why}"))
    return lines or [(True, "ok   folder: no unlisted shards")]


def verify_run(
    output_dir: str, summary: dict | None = None, decode: bool = False, max_pixels: int = encoders.DEFAULT_MAX_PIXELS,
) -> list[tuple[bool, str]]:
    """(ok, line): one per shard in summary order, then the totals, one per split, and the folder's.

    decode: also decode every image, none larger than max_pixels (a larger one is a FAIL, never decoded).
    """
    if summary is None:
        summary = load_summary(output_dir)
    else:
        summaries.validate(summary, storage.join(output_dir, SUMMARY))
    rules = RecordRules(summary)
    if decode and rules.image_key is None:
        raise PrepError(f"{storage.join(output_dir, SUMMARY)}: --decode needs feature_fields to name the image feature")
    lines = []
    checks: dict[str, ShardCheck] = {}
    for shard in summary["shards"]:
        check = checks[shard["path"]] = check_shard(output_dir, shard, summary, decode, rules, max_pixels)
        if check.problem:
            lines.append((False, f"FAIL {shard['path']}: {check.problem}"))
        else:
            lines.append((True, f"ok   {shard['path']}: {shard['num_records']} records, {shard['bytes']:,} bytes"))
    lines.append(_totals_line(summary, list(checks.values()), rules))
    for name, split in summary["splits"].items():
        split_checks = [checks[s["path"]] for s in summary["shards"] if s["split"] == name]
        lines.append(_split_line(name, split, summary, split_checks, rules))
    return lines + metadata_lines(output_dir, summary) + unlisted_lines(output_dir, summary)


def metadata_lines(output_dir: str, summary: dict) -> list[tuple[bool, str]]:
    """(ok, line) per run-level file the format wrote (dataset_info.json, a wids index): present, same bytes."""
    lines = []
    for entry in summary.get("metadata_files", []):
        try:
            data = read_in_run(output_dir, entry["path"], limit=entry["bytes"])  # never more than the summary says
        except FileNotFoundError:
            lines.append((False, f"FAIL {entry['path']}: missing (summary.json lists it)"))
            continue
        except OSError as err:
            if err.errno == errno.EFBIG:
                lines.append((False, f"FAIL {entry['path']}: larger than the {entry['bytes']} bytes summary.json lists"))
            else:
                lines.append((False, f"FAIL {entry['path']}: {read_problem(err)}"))
            continue
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            lines.append((False, f"FAIL {entry['path']}: {len(data)} bytes, not the {entry['bytes']} bytes summary.json lists, or another sha256"))
        elif entry["path"].endswith(".wids.json") and (problem := wids_problem(entry["path"], data, summary)):
            lines.append((False, f"FAIL {entry['path']}: {problem}"))
        else:
            lines.append((True, f"ok   {entry['path']}: {entry['bytes']:,} bytes"))
    return lines


def wids_problem(path: str, data: bytes, summary: dict) -> str | None:
    """What is wrong with a wids index for the run: wids opens every url its shardlist gives (webdataset's
    "pipe:" urls run a command), so each must name a shard of summary.json, relative to the index's folder."""
    try:
        index = json.loads(data)
        urls = [item["url"] for item in index["shardlist"]]
    except (ValueError, TypeError, KeyError, RecursionError):
        return "not a wids index (a JSON object with a shardlist of urls)"
    shards = {s["path"] for s in summary["shards"]}
    folder = posixpath.dirname(path)
    for url in urls:
        # a url with a scheme (pipe:, file:, http:) is no shard; "./a:b.tar" is how the writer names one holding ":"
        try:
            plain = isinstance(url, str) and (url.startswith("./") or not urlparse(url).scheme)
        except ValueError:  # not even a url ("http://[")
            plain = False
        if not plain or posixpath.normpath(posixpath.join(folder, url)) not in shards:
            return f"lists {_shown(url)}, which is not a shard of summary.json (wids would open it)"
    return None


def positive_int(text: str) -> int:
    """argparse type of a count option (--max-pixels): a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 1")
    return value


EXAMPLES = """examples:
  %(prog)s outputs/digits/2026-11-21_10-00-00_4242            check a finished run against its summary.json
  %(prog)s outputs/digits/2026-11-21_10-00-00_4242 --decode   ... and decode every image
  %(prog)s s3://bucket/records/imagenet_val                   a run in object storage (prep-records[cloud])"""


def _about() -> str:
    """The module docstring without its command line: what the tool does, for --help."""
    about = __doc__.split(": ", 1)[1]
    return about[0].upper() + about[1:]


def main(argv: list[str] | None = None, prog: str = "python -m prep.verify") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=f"{EXAMPLES}\n\n{_about()}", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("output_dir", help="a finished run's output directory (with summary.json)")
    parser.add_argument("--decode", action="store_true", help="also decode every image")
    parser.add_argument("--max-pixels", type=positive_int, default=encoders.DEFAULT_MAX_PIXELS,
                        help=f"with --decode: a larger image fails unread (default {encoders.DEFAULT_MAX_PIXELS:,}, as prep's)")
    args = parser.parse_args(argv)
    try:
        summary = load_summary(args.output_dir)
        lines = verify_run(args.output_dir, summary, decode=args.decode, max_pixels=args.max_pixels)
    except (PrepError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for _, line in lines:
        print(line)
    shards = len(summary["shards"])
    bad = sum(1 for ok, _ in lines[:shards] if not ok)
    other = sum(1 for ok, _ in lines[shards:] if not ok)
    print(f"{shards - bad} of {shards} shards ok" + (f", {bad} failed" if bad else "") + (f"; {other} other check(s) failed" if other else ""))
    return 1 if bad or other else 0


def cli() -> None:
    """The `prep-verify` command."""
    # `prep-verify ... | head` ends quietly, as other Unix tools do, not with a broken-pipe error line
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main(prog="prep-verify"))


if __name__ == "__main__":
    sys.exit(main())
