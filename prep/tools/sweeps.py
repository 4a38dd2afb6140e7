"""A sweep folder read back: one row per job of a Hydra multirun (overrides, status, shards, bytes, records,
seconds), as sweep_summary.csv and a Markdown table. No Hydra import: prep-readbench reads sweeps with it."""

from __future__ import annotations

import csv
import io
import json
import os

SWEEP_CSV = "sweep_summary.csv"
COLUMNS = ["job", "overrides", "status", "shards", "bytes", "records", "seconds", "records_per_second"]


def job_dirs(sweep_dir: str) -> list[str]:
    """The job folders of a sweep (Hydra numbers them 0, 1, ...), in job order."""
    names = [n for n in os.listdir(sweep_dir) if os.path.isdir(os.path.join(sweep_dir, n, ".hydra"))]
    return [os.path.join(sweep_dir, n) for n in sorted(names, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))]


def _overrides(job_dir: str) -> list[str]:
    path = os.path.join(job_dir, ".hydra", "overrides.yaml")
    if not os.path.exists(path):
        return []
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.to_container(OmegaConf.load(path), resolve=False)]


def common_overrides(sweep_dir: str) -> list[str]:
    """The overrides every job of the sweep shares (the table shows only what varies)."""
    per_job = [_overrides(d) for d in job_dirs(sweep_dir)]
    return [o for o in per_job[0] if all(o in job for job in per_job)] if per_job else []


def collect(sweep_dir: str) -> list[dict]:
    rows = []
    common = set(common_overrides(sweep_dir))
    for job_dir in job_dirs(sweep_dir):
        varying = " ".join(o for o in _overrides(job_dir) if o not in common)
        row = {"job": os.path.basename(job_dir), "overrides": varying, "status": "failed"}
        summary_path = os.path.join(job_dir, "summary.json")
        if os.path.exists(summary_path):
            with open(summary_path) as f:
                summary = json.load(f)
            row.update(
                status="ok",
                shards=len(summary["shards"]),
                bytes=sum(s["bytes"] for s in summary["shards"]),
                records=summary["num_records"],
                seconds=summary["seconds"],
                records_per_second=summary["records_per_second"],
            )
        rows.append(row)
    return rows


def columns_of(rows: list[dict]) -> list[str]:
    extra = [key for row in rows for key in row if key not in COLUMNS]
    return COLUMNS + list(dict.fromkeys(extra))


def write_table(sweep_dir: str, rows: list[dict]) -> str:
    """Write sweep_summary.csv; return the same table as Markdown."""
    columns = columns_of(rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with open(os.path.join(sweep_dir, SWEEP_CSV), "w", newline="") as f:
        f.write(out.getvalue())
    return markdown(rows, columns)


def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)
