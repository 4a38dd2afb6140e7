"""plan.json and the dry run's table: what a run will write, known before its first shard.

Every run writes plan.json (under its lock, before the first shard); `dry_run=true` stops there. Its
per-split numbers use summary.json's keys (num_records, num_shards, classes), so the two can be compared.
"""

from __future__ import annotations

import logging
from collections import Counter

from prep.core import storage
from prep.core.table import ItemTable, label_counts
from prep.runfiles.names import PLAN

log = logging.getLogger(__name__)
IMBALANCE = 10  # a class this many times smaller than the largest is named in the warnings
_TABLE_CLASSES = 30  # classes shown per split in the table; the rest are summed up


SAMPLE = 20_000  # files whose sizes a dry run reads without a scan; more images are estimated from them


class Sizes:
    """What the stored images will weigh, for pass-through: each file's size (from the scan, or read for up to
    SAMPLE files), or beyond that the mean size of an even sample of SAMPLE files times the images."""

    def __init__(self, exact: dict[str, int] | None = None, mean: float | None = None) -> None:
        self.exact = exact
        self.mean = mean

    def of(self, members) -> int:
        if self.exact is not None:
            names = members.names if isinstance(members, ItemTable) else (item.name for item in members)
            return sum(self.exact.get(name, 0) for name in names)
        return round(self.mean * len(members))


def estimated_sizes(items, source, encoder, scanned: dict | None) -> Sizes | None:
    """The stored sizes for pass-through (the files' sizes), else None (unknown before encoding)."""
    from prep.encoders.passthrough import PassthroughEncoder

    if not isinstance(encoder, PassthroughEncoder):
        return None
    if scanned is not None:
        return Sizes(exact=scanned)
    step = max(1, len(items) // SAMPLE)
    sizes = {}
    for i in range(0, len(items), step):
        item = items[i]
        stamp = source.stamp(item.ref)
        if not stamp:
            return None
        sizes[item.name] = int(str(stamp).split(":", 1)[0])
    if step == 1:
        return Sizes(exact=sizes)
    return Sizes(mean=sum(sizes.values()) / len(sizes))


def build(*, name, writer, listing, splits, plans, skipped, duplicates, balance, scan, warnings, sizes) -> dict:
    per_split = {}
    shards = []
    for plan in plans:
        est = sizes.of(plan.items) if sizes is not None else None
        shards.append({"path": plan.path, "split": plan.split, "num_records": len(plan.items), "estimated_bytes": est})
    for split, members in splits.items():
        if not members:
            continue
        counts = label_counts(members)
        est = sizes.of(members) if sizes is not None else None
        per_split[split] = {
            "num_records": len(members),
            "num_shards": sum(1 for p in plans if p.split == split),
            "classes": {str(label): counts[label] for label in sorted(counts)},
            "estimated_bytes": est,
        }
    return {
        "dataset": name,
        "format": writer.format,
        "pattern": writer.pattern,
        "num_records": sum(len(p.items) for p in plans),
        "splits": per_split,
        "shards": shards,
        "label_map": listing.label_map,
        "skipped": [s.as_dict() for s in skipped],
        "duplicates": duplicates,
        "split_balance": balance,
        "scan": {k: v for k, v in scan.items() if k != "seconds"} if scan else scan,  # the same for a dry and a real run
        "warnings": warnings,
    }


def warnings_for(listing, splits, splitter, duplicates: dict | None) -> list[str]:
    """What a user should look at before trusting the split: duplicates, conflicts, classes missing from a
    split, hidden folders that became classes or were left out, classes far smaller than the largest."""
    out = list(splitter.notes)
    names = listing.class_names
    if duplicates and duplicates.get("groups"):
        groups = duplicates["groups"]
        copies = sum(len(g["names"]) for g in groups)
        together = "" if splitter.predefined else "; each group is kept in one split"
        out.append(
            f"{len(groups)} duplicate group(s), {copies} images in all (split.dedup={duplicates['mode']}){together}"
            + (f", {duplicates['dropped']} extra copies not written (split.dedup_keep=first)" if duplicates["dropped"] else "")
        )
        if duplicates.get("conflicts"):
            out.append(f"{duplicates['conflicts']} duplicate group(s) have different labels (conflicts): see summary.json duplicates")
        crossing = [g for g in groups if len({s for s in g.get("splits", []) if s}) > 1]
        if crossing:
            first = crossing[0]
            out.append(
                f"{len(crossing)} duplicate group(s) are in more than one of the given splits (leakage), e.g. "
                + ", ".join(f"{n} ({s})" for n, s in zip(first["names"][:3], first["splits"][:3]))
                + "; split.dedup_keep=first keeps the validation/test copy and drops the train one"
            )
    if names:
        odd = [n for n in names if n.startswith(".") or n in ("__MACOSX", "ipynb_checkpoints")]
        if odd:
            out.append(f"class name(s) {', '.join(map(repr, odd[:5]))} look like hidden or system folders, not classes")
    hidden = [_hidden_part(entry) for entry in listing.ignored]
    hidden = [h for h in hidden if h]
    if hidden:
        shown = ", ".join(sorted(set(hidden))[:3])
        out.append(f"{len(hidden)} hidden file(s) or file(s) in hidden folders were left out, e.g. {shown}")
    totals: Counter = Counter()
    for members in splits.values():
        totals.update(label_counts(members))
    if names:
        empty = [name for label, name in enumerate(names) if not totals[label]]
        if empty:
            out.append(f"{len(empty)} class(es) have no image left to write (all skipped, or duplicates of other images): {', '.join(map(repr, empty[:5]))}")
    if len(totals) > 1:
        largest = max(totals.values())
        small = sorted(label for label, n in totals.items() if n * IMBALANCE <= largest)
        if small:
            shown = ", ".join(f"{names[label] if names else label} ({totals[label]})" for label in small[:5])
            out.append(f"{len(small)} class(es) have at most 1/{IMBALANCE} of the largest class's {largest} images: {shown}")
    return out


def _hidden_part(path: str) -> str | None:
    """The path up to its first hidden part (train/.ipynb_checkpoints), or None."""
    parts = path.split(" (", 1)[0].split("/")
    for i, part in enumerate(parts):
        if part.startswith("."):
            return "/".join(parts[: i + 1])
    return None


def write(output_dir: str, plan: dict) -> None:
    storage.write_json(storage.join(output_dir, PLAN), plan, root=output_dir)


def table(plan: dict) -> str:
    """The dry run's table: per split and class, images, shards and estimated bytes; then the warnings."""
    label_names = {str(v): k for k, v in plan["label_map"].items()}
    rows = [("split", "class", "images", "shards", "est. size")]
    for split, info in plan["splits"].items():
        rows.append((split, "(all)", f"{info['num_records']:,}", f"{info['num_shards']:,}", _size(info["estimated_bytes"])))
        classes = sorted(info["classes"].items(), key=lambda kv: int(kv[0]))
        for label, count in classes[:_TABLE_CLASSES]:
            shown = f"{label} {label_names[label]}" if label in label_names else label
            rows.append(("", shown[:40], f"{count:,}", "", ""))
        if len(classes) > _TABLE_CLASSES:
            rest = sum(count for _, count in classes[_TABLE_CLASSES:])
            rows.append(("", f"... {len(classes) - _TABLE_CLASSES} more classes", f"{rest:,}", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    lines.append(f"{plan['num_records']:,} images in {len(plan['shards']):,} shards; {len(plan['skipped']):,} skipped")
    for warning in plan["warnings"]:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def _size(value) -> str:
    if value is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(value)


