"""The output directory's safety: never overwrite by accident, resume an interrupted run, clean up after a failed one.

A run records each finished shard in a manifest beside the shards as it completes; summary.json is
written last and the manifest removed. So a folder with a manifest and no summary is an unfinished run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from prep.errors import ConfigError, WriteError
from prep.stages import ShardPlan, ShardResult

log = logging.getLogger(__name__)
MANIFEST = ".prep-manifest.jsonl"
SUMMARY = "summary.json"
LABELS_CSV = "labels.csv"


def foreign_entries(output_dir: str) -> list[str]:
    """Everything in the folder except Hydra's own files (its .hydra folder and the run's log)."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(n for n in os.listdir(output_dir) if n != ".hydra" and not n.endswith(".log"))


def plan_digest(plan: ShardPlan) -> str:
    """What a shard holds, so resume never keeps a shard planned from other inputs."""
    text = "\n".join(f"{item.name}\t{item.label}" for item in plan.items)
    return hashlib.sha256(f"{plan.path}\n{plan.split}\n{text}".encode()).hexdigest()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Manifest:
    """Append-only record of finished shards: one JSON line each, after a header with the config fingerprint."""

    def __init__(self, output_dir: str, fingerprint: str) -> None:
        self.path = os.path.join(output_dir, MANIFEST)
        self.fingerprint = fingerprint

    def read(self) -> dict[str, dict]:
        entries: dict[str, dict] = {}
        with open(self.path) as f:
            lines = f.read().splitlines()
        header = json.loads(lines[0]) if lines else {}
        if header.get("fingerprint") != self.fingerprint:
            raise ConfigError(
                f"resume=true: {self.path} was written with another config (fingerprint {header.get('fingerprint')}); "
                "resume with the same config, or pass overwrite=true to start again"
            )
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash: that shard is simply redone
                continue
            entries[entry["result"]["path"]] = entry
        return entries

    def start(self) -> None:
        with open(self.path, "w") as f:
            f.write(json.dumps({"fingerprint": self.fingerprint}) + "\n")

    def add(self, plan: ShardPlan, result: ShardResult) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"plan": plan_digest(plan), "result": result.as_dict()}, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


def _remove_previous(output_dir: str) -> None:
    """Delete what an earlier prep run wrote here (its summary, manifest, shards, index files, partials); nothing else."""
    paths = {SUMMARY, LABELS_CSV, MANIFEST}
    for name in (SUMMARY, MANIFEST):
        path = os.path.join(output_dir, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            text = f.read()
        try:
            if name == SUMMARY:
                shards = json.loads(text).get("shards", [])
                paths.update(s["path"] for s in shards)
            else:
                for line in text.splitlines()[1:]:
                    paths.add(json.loads(line)["result"]["path"])
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            pass
    for rel in list(paths):
        paths.add(rel + ".idx")
    for rel in paths:
        try:
            os.remove(os.path.join(output_dir, rel))
        except (FileNotFoundError, IsADirectoryError):
            pass
    remove_partials(output_dir)


def remove_partials(output_dir: str) -> None:
    for folder, _, files in os.walk(output_dir):
        for name in files:
            if name.endswith(".partial"):
                os.remove(os.path.join(folder, name))


def prepare(output_dir: str, *, overwrite: bool, resume: bool, fingerprint: str) -> dict[str, dict]:
    """Make output_dir ready; returns the finished shards a resumed run may keep (path -> manifest entry).

    Refuses, changing nothing, when the folder holds a finished run, an unfinished one, or other files,
    unless overwrite=true (which deletes only what an earlier run wrote) or resume=true (unfinished runs).
    """
    if overwrite and resume:
        raise ConfigError("overwrite=true and resume=true: choose one (resume keeps finished shards, overwrite starts again)")
    entries = foreign_entries(output_dir)
    manifest = Manifest(output_dir, fingerprint)
    keep: dict[str, dict] = {}
    if SUMMARY in entries and not overwrite:
        raise ConfigError(
            f"output_dir={output_dir} already holds a finished run ({SUMMARY}); pass overwrite=true to replace it, "
            "or choose another output_dir"
        )
    if MANIFEST in entries and resume:
        keep = manifest.read()
        remove_partials(output_dir)
    elif MANIFEST in entries and not overwrite:
        raise ConfigError(
            f"output_dir={output_dir} holds an unfinished run (no {SUMMARY}); pass resume=true to finish it, or overwrite=true to start again"
        )
    elif entries and not overwrite:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ConfigError(f"output_dir={output_dir} is not empty ({shown}); choose an empty folder, or pass overwrite=true")
    elif overwrite:
        _remove_previous(output_dir)
    try:
        os.makedirs(output_dir, exist_ok=True)
        if not keep:
            manifest.start()
    except OSError as err:
        raise WriteError(f"output_dir={output_dir}: cannot write there: {err.strerror}") from None
    return keep


def reusable(output_dir: str, plan: ShardPlan, entry: dict | None) -> ShardResult | None:
    """The recorded result of a finished shard whose plan and bytes are unchanged, else None (write it again)."""
    if entry is None or entry.get("plan") != plan_digest(plan):
        return None
    result = ShardResult.from_dict(entry["result"])
    path = os.path.join(output_dir, result.path)
    try:
        if os.path.getsize(path) != result.bytes or file_sha256(path) != result.sha256:
            return None
    except OSError:
        return None
    if not all(os.path.exists(os.path.join(output_dir, extra)) for extra in result.extra_files):
        return None
    return result


def clean_unfinished(output_dir: str, plans: list[ShardPlan]) -> None:
    """After a failed or interrupted run: no partial shard is left behind (workers killed mid-shard leave them)."""
    for plan in plans:
        for path in (os.path.join(output_dir, plan.path + ".partial"), os.path.join(output_dir, plan.path + ".idx.partial")):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
