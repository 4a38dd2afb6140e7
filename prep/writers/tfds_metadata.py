"""TFDS's metadata for a run (dataset_info.json, features.json, <key>.labels.txt), written by prep without
TensorFlow or TFDS, so that `tfds.builder_from_directory(run_dir)` reads the shards with no extra pass.

The files are what TFDS 4.x's own `write_metadata` writes (core/dataset_info.py, core/features/*.py):
protobuf JSON with int64 values as strings and keys sorted, dataset_info.json indented by 2 and
features.json by 4, no newline at the end. Each record key is one top-level feature, its "/" kept (as TFDS's
ImageFolder keys `image/filename`); class names go to `<key with / as .>.labels.txt`, one per line.

Two moments decide what is written:
- planning (`plan`, before the first shard): whether the run can be TFDS-loadable at all (compression, the
  shard-name pattern, dataset and split names, label types, keys) and so which files are written. When it
  cannot, no file is planned and one warning says why.
- the end (`files`, from the finished summary): the feature types (image shape and encoding, ClassLabel or
  int64) and the split sizes. What only the end knows never removes a planned file: images TFDS's Image
  feature cannot decode are declared as bytes, and a shard left unwritten because every image in it was
  skipped is a shard of length 0 (TFDS skips empty shards when reading), so its neighbours keep their names.
"""

from __future__ import annotations

import json
import logging
import re
import string
from dataclasses import dataclass, field

from prep.core.errors import WriteError

log = logging.getLogger(__name__)

DATASET_INFO = "dataset_info.json"
FEATURES = "features.json"
VERSION = "1.0.0"
DEFAULT_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"  # naming.DEFAULT_FILENAME_TEMPLATE
_DATASET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # naming._NAME_CLASS (ASCII: what every TFDS name regex accepts)
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]*[A-Za-z0-9][A-Za-z0-9_-]*")  # splits._SUB_SPEC_RE, with one alphanumeric
_SHARD_DIGITS = 5  # naming._DEFAULT_NUM_DIGITS_FOR_SHARDS: TFDS pads shard numbers to max(5, digits of the count)
# Formats tf.image.decode_image turns into one (height, width, channels) array, as tfds.features.Image decodes.
_DECODABLE = {"jpeg", "png", "bmp"}
_ENCODINGS = {"jpeg": (0, 1, 3), "png": (0, 1, 2, 3, 4)}  # image_feature._ACCEPTABLE_CHANNELS
_CLASSES = "tensorflow_datasets.core.features."
_MAX_INT_CLASSES = 1000  # integer labels 0..max become a ClassLabel when dense, or when max < this


@dataclass
class Plan:
    """What planning decided: why the run is not TFDS-loadable (then no file), or the files to write."""

    reason: str | None = None
    template: str = ""
    label_names: dict[str, list[str]] = field(default_factory=dict)  # label key -> class names (a labels file)
    notes: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    layout: bool = False  # the reason is the shard names the user chose (seed 002's data_0.tfrecord): no surprise

    def paths(self) -> list[str]:
        if self.reason:
            return []
        return sorted([DATASET_INFO, FEATURES, *(labels_file(key) for key in self.label_names)])


def labels_file(key: str) -> str:
    """The file TFDS's ClassLabel reads its names from (feature.convert_feature_name_to_filename)."""
    return key.replace("/", ".") + ".labels.txt"


def template_of(pattern: str) -> tuple[str | None, str | None]:
    """(TFDS filepathTemplate, None) for a shard-name pattern TFDS can express, else (None, why not)."""
    out = []
    for literal, name, spec, conversion in string.Formatter().parse(pattern):
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is None:
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if conversion is None and name == "dataset" and not spec:
            out.append("{DATASET}")
        elif conversion is None and name == "split" and not spec:
            out.append("{SPLIT}")
        elif conversion is None and name in ("index", "count") and spec in ("05d", "05"):
            out.append("{SHARD_INDEX}" if name == "index" else "{NUM_SHARDS}")
        else:
            return None, (
                f"writer.pattern={pattern!r}: TFDS names shards with {{dataset}}, {{split}}, {{index:05d}} and {{count:05d}} only, "
                f"not {shown}"
            )
    return "".join(out).replace("{SHARD_INDEX}-of-{NUM_SHARDS}", "{SHARD_X_OF_Y}"), None


def _names_problem(names: list[str]) -> str | None:
    """Why TFDS would not read these class names back as they are (it splits its file on \\n and strips)."""
    for name in names:
        if not name or name != name.strip() or "\n" in name or "\r" in name:
            return f"class name {name!r} would not read back from a TFDS labels file (empty, spaces at its ends, or a line break)"
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            return f"class name {name.encode('utf-8', 'surrogateescape')!r} is not UTF-8"
    return None


def plan(writer, file_format: str, dataset: str, splits: list[str], listing) -> Plan:
    """Decide before the first shard whether the run is TFDS-loadable, and which files it gets."""
    if writer.compression:
        return Plan(f"writer.compression={writer.compression}: TFDS reads uncompressed {file_format} shards only")
    if not _DATASET_NAME.fullmatch(dataset):
        return Plan(f"name={dataset!r}: TFDS dataset names are letters, digits and _, starting with a letter")
    for split in splits:
        if not _SPLIT_NAME.fullmatch(split) or split == "all":
            return Plan(f"split {split!r}: TFDS split names are letters, digits, _ and - (and not 'all')")
    template, why = template_of(writer.pattern)
    if why:
        return Plan(why, layout=True)
    if template.replace(f".{file_format}-", ".{FILEFORMAT}-") == DEFAULT_TEMPLATE:
        template = DEFAULT_TEMPLATE
    notes: list[str] = []
    label_names: dict[str, list[str]] = {}
    for key, (field_name, kind) in writer.features.items():
        if field_name == "label" and kind != "int64":
            return Plan(f"writer.features.{key}=label:{kind}: TFDS's ClassLabel needs int64 labels")
        if field_name == "label" and listing.class_names is not None:
            problem = _names_problem(listing.class_names)
            if problem:
                notes.append(f"{key}: {problem}; declared as ClassLabel(num_classes={len(listing.class_names)}) without names")
            else:
                label_names[key] = list(listing.class_names)
    files: dict[str, str] = {}
    for key in label_names:
        if labels_file(key) in files:
            return Plan(f"writer.features keys {files[labels_file(key)]!r} and {key!r} would share the TFDS labels file {labels_file(key)!r}")
        files[labels_file(key)] = key
    return Plan(None, template, label_names, notes, list(splits))


def _int64(value: int) -> str:
    return str(value)  # protobuf's JSON writes int64 as a string


def _feature(class_name: str, body_key: str, body: dict) -> dict:
    return {"pythonClassName": _CLASSES + class_name, body_key: body}


def _tensor(class_name: str, dtype: str, shape: tuple = (), encoding: str = "none") -> dict:
    dims = {"dimensions": [_int64(-1 if d is None else d) for d in shape]} if shape else {}
    return _feature(class_name, "tensor", {"dtype": dtype, "encoding": encoding, "shape": dims})


def _fixed(summary: dict) -> tuple[int | None, int | None, int | None]:
    shapes = summary.get("image_shapes") or {}
    height, width, channels = shapes.get("height"), shapes.get("width"), shapes.get("channels")
    return (
        height[0] if height and height[0] == height[1] else None,
        width[0] if width and width[0] == width[1] else None,
        channels[0] if channels and len(channels) == 1 else None,
    )


def image_feature(key: str, summary: dict, notes: list[str]) -> dict:
    """The image key's feature: Image (encoded), a uint8 Tensor of bytes (raw pixels of one shape), else bytes."""
    formats = {name for name, count in (summary.get("image_formats") or {}).items() if count}
    height, width, channels = _fixed(summary)
    if formats == {"raw"}:
        if None in (height, width, channels):
            notes.append(f"{key}: raw pixels of different shapes; declared as bytes (reshape them with the shape features)")
            return _tensor("tensor_feature.Tensor", "string")
        return _tensor("tensor_feature.Tensor", "uint8", (height, width, channels), "bytes")
    if not formats or not formats <= _DECODABLE:
        notes.append(f"{key}: images are {sorted(formats)}, not all decodable by tfds.features.Image (jpeg, png, bmp); declared as bytes")
        return _tensor("tensor_feature.Tensor", "string")
    if channels is None:
        found = set((summary.get("image_shapes") or {}).get("channels") or [])
        if not found <= {1, 3}:
            notes.append(f"{key}: images of {sorted(found)} channels mixed; declared as bytes (tfds.features.Image decodes one channel count)")
            return _tensor("tensor_feature.Tensor", "string")
        # Grayscale among colour (ImageNet holds both): TFDS decodes grayscale to 3 channels when the feature says 3,
        # in as_dataset (tf.image.decode_image) and as_data_source alike, as its own ImageFolder declares them.
        channels = 3
    body: dict = {"dtype": "uint8", "shape": {"dimensions": [_int64(-1 if d is None else d) for d in (height, width, channels)]}}
    (only,) = formats if len(formats) == 1 else (None,)
    if only in _ENCODINGS and channels in _ENCODINGS[only]:
        body["encodingFormat"] = only
    return _feature("image_feature.Image", "image", body)


def label_feature(key: str, summary: dict, names: list[str] | None, class_count: int | None) -> dict:
    """ClassLabel with names, ClassLabel(num_classes) for integer labels 0..n-1 (or nearly), else int64."""
    if names is not None:
        return _feature("class_label_feature.ClassLabel", "classLabel", {"numClasses": _int64(len(names))})
    if class_count is not None:
        return _feature("class_label_feature.ClassLabel", "classLabel", {"numClasses": _int64(class_count)})
    labels = {int(label) for split in summary["splits"].values() for label, count in split["classes"].items() if count}
    if labels and min(labels) >= 0 and max(labels) < max(_MAX_INT_CLASSES, 2 * len(labels)):
        return _feature("class_label_feature.ClassLabel", "classLabel", {"numClasses": _int64(max(labels) + 1)})
    return _tensor("scalar.Scalar", "int64")


def features_json(summary: dict, the_plan: Plan, class_names: list[str] | None) -> tuple[dict, list[str]]:
    """features.json's content and the notes on what was declared other than asked."""
    notes: list[str] = []
    features = {}
    kinds, fields = summary["features"], summary["feature_fields"]
    for key in sorted(kinds):
        field_name, kind = fields[key], kinds[key]
        if field_name == "encoded":
            features[key] = image_feature(key, summary, notes)
        elif field_name == "label":
            count = len(class_names) if class_names is not None else None
            features[key] = label_feature(key, summary, the_plan.label_names.get(key), count)
        elif kind == "bytes":
            features[key] = _feature("text_feature.Text", "text", {})
        else:
            features[key] = _tensor("scalar.Scalar", {"int64": "int64", "float": "float32"}[kind])
    top = {"featuresDict": {"features": features}, "pythonClassName": _CLASSES + "features_dict.FeaturesDict"}
    return top, notes


def _shard_regex(pattern: str, dataset: str, split: str) -> re.Pattern:
    """The names one split's shards get, with the shard index and count as groups."""
    parts, seen = [], set()
    for literal, name, _, _ in string.Formatter().parse(pattern):
        parts.append(re.escape(literal))
        if name in ("index", "count"):
            parts.append(f"(?P={name})" if name in seen else rf"(?P<{name}>\d+)")
            seen.add(name)
        elif name is not None:
            parts.append(re.escape(dataset if name == "dataset" else split))
    return re.compile("".join(parts))


def split_infos(summary: dict, pattern: str, splits: list[str], template: str) -> list[dict]:
    """dataset_info.json's splits: shard lengths by shard index (0 for a shard whose images were all
    skipped, which TFDS passes over), total bytes, and the shard-name template."""
    out = []
    for split in splits:
        regex = _shard_regex(pattern, summary["dataset"], split)
        lengths: dict[int, int] = {}
        count = 0
        num_bytes = 0
        for shard in summary["shards"]:
            if shard["split"] != split:
                continue
            match = regex.fullmatch(shard["path"])
            if match is None:  # the pattern made this name: a mismatch is a bug in prep
                raise WriteError(f"TFDS metadata: shard {shard['path']!r} does not match writer.pattern={pattern!r} (a bug in prep)")
            index = int(match.groupdict().get("index") or 0)
            count = max(count, int(match.groupdict().get("count") or 0), index + 1)
            lengths[index] = shard["num_records"]
            num_bytes += shard["bytes"]
        if len(str(count)) > _SHARD_DIGITS:
            raise WriteError(
                f"TFDS metadata: split {split!r} has {count} shards; TFDS pads shard numbers to {len(str(count))} digits, "
                f"writer.pattern={pattern!r} to {_SHARD_DIGITS}: use fewer shards"
            )
        out.append({
            "filepathTemplate": template,
            "name": split,
            "numBytes": _int64(num_bytes),
            "shardLengths": [_int64(lengths.get(i, 0)) for i in range(count)],
        })
    return out


def _supervised_keys(summary: dict) -> dict | None:
    """(image, label) for `as_supervised=True`, when the run has one key of each."""
    keys = {}
    for wanted in ("encoded", "label"):
        found = [key for key, f in summary["feature_fields"].items() if f == wanted]
        if len(found) != 1:
            return None
        keys[wanted] = found[0]
    return {"tuple": {"items": [{"featureKey": keys["encoded"]}, {"featureKey": keys["label"]}]}}


def files(the_plan: Plan, summary: dict, file_format: str, pattern: str, class_names: list[str] | None) -> dict[str, bytes]:
    """The planned files from the finished summary; `summary["tfds"]` records what was done and why."""
    if the_plan.reason:
        summary["tfds"] = {"written": False, "reason": the_plan.reason}
        return {}
    features, notes = features_json(summary, the_plan, class_names)
    notes = the_plan.notes + notes
    info = {
        "description": f"{summary['num_records']} records written by prep {summary.get('version', '')}; summary.json beside this file describes the run.",
        "fileFormat": file_format,
        "name": summary["dataset"],
        "splits": split_infos(summary, pattern, the_plan.splits, the_plan.template),
        "version": VERSION,
    }
    supervised = _supervised_keys(summary)
    if supervised:
        info["supervisedKeys"] = supervised
    out = {
        DATASET_INFO: json.dumps(info, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8"),
        FEATURES: json.dumps(features, indent=4, sort_keys=True, ensure_ascii=False).encode("utf-8"),
    }
    for key, names in the_plan.label_names.items():
        out[labels_file(key)] = ("\n".join(names) + "\n").encode("utf-8")
    for note in notes:
        log.warning("TFDS metadata: %s", note)
    summary["tfds"] = {"written": True, "notes": notes}
    return out


class TFDSMetadata:
    """The writer hooks of a format TFDS reads (tfrecord, array_record): plan once, write at the end."""

    file_format = ""
    _tfds_plan: Plan | None = None  # made by metadata_paths when the run is planned

    def metadata_paths(self, dataset: str, splits: list[str], listing) -> list[str]:
        self._tfds_plan = plan(self, self.file_format, dataset, splits, listing)
        if self._tfds_plan.reason:
            # A layout asked for by name (seed 002's data_{index}.tfrecord) is what the user wanted: one calm line.
            say = log.info if self._tfds_plan.layout else log.warning
            say("no TFDS metadata (tfds.builder_from_directory will not read this run): %s", self._tfds_plan.reason)
        return self._tfds_plan.paths()

    def metadata_files(self, summary: dict, listing) -> dict[str, bytes]:
        the_plan = self._tfds_plan
        if the_plan is None:  # called on its own (not by the pipeline): plan from the summary's splits
            splits = [name for name, split in summary["splits"].items() if split["num_records"]]
            the_plan = plan(self, self.file_format, summary["dataset"], splits, listing)
        return files(the_plan, summary, self.file_format, self.pattern, listing.class_names)
