"""summary.json: what a run wrote, written last so that its presence means the run finished."""

from __future__ import annotations

import json
from collections import Counter

from prep import __version__, storage
from prep.errors import ConfigError, WriteError
from prep.outputs import LABELS_CSV, SUMMARY
from prep.stages import ShardResult



def build(*, name: str, writer, listing, splits: list[str], results: list[ShardResult], seconds: float, run_info: dict) -> dict:
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
    skipped = [s.as_dict() for s in listing.skipped] + [s.as_dict() for r in results for s in r.skipped]
    num_records = sum(r.num_records for r in results)
    return {
        "dataset": name,
        "format": writer.format,
        "compression": getattr(writer, "compression", None),
        "num_records": num_records,
        "splits": per_split,
        "shards": [
            {"path": r.path, "split": r.split, "num_records": r.num_records, "bytes": r.bytes, "sha256": r.sha256}
            for r in written
        ],
        "label_map": listing.label_map,
        "features": writer.feature_types(listing.class_names is not None),
        "feature_fields": writer.feature_fields(listing.class_names is not None),
        "image_formats": dict(sorted(formats.items())),
        "skipped": skipped,
        "unlabelled": {"count": len(listing.unlabelled), "examples": listing.unlabelled[:20]},
        "seconds": round(seconds, 3),
        "records_per_second": round(num_records / seconds, 1) if seconds > 0 else 0.0,
        "version": __version__,
        **run_info,
    }


def _write_atomically(path: str, text: str) -> None:
    try:
        storage.write_bytes(path, text.encode("utf-8"))
    except OSError as err:
        raise WriteError(f"{path}: cannot write: {err.strerror or err}") from None


def write(output_dir: str, summary: dict) -> None:
    _write_atomically(storage.join(output_dir, SUMMARY), json.dumps(summary, indent=2, sort_keys=True) + "\n")


def write_labels_csv(output_dir: str, summary: dict, class_names: list[str] | None) -> None:
    """labels.csv beside the shards (as image2tfrecords wrote it): class id, class name, records per split."""
    splits = list(summary["splits"])
    ids = sorted({int(label) for split in summary["splits"].values() for label in split["classes"]} | set(range(len(class_names or []))))
    rows = ["class_id,class_name," + ",".join(splits)]
    for label in ids:
        name = class_names[label] if class_names else str(label)
        if any(c in name for c in ',"\n'):
            name = '"' + name.replace('"', '""') + '"'
        counts = [str(summary["splits"][split]["classes"].get(str(label), 0)) for split in splits]
        rows.append(f"{label},{name}," + ",".join(counts))
    _write_atomically(storage.join(output_dir, LABELS_CSV), "\n".join(rows) + "\n")


def load(output_dir: str) -> dict:
    path = storage.join(output_dir, SUMMARY)
    try:
        return json.loads(storage.read_bytes(path))
    except FileNotFoundError:
        raise ConfigError(f"{output_dir}: no {SUMMARY}; not a finished prep run") from None
