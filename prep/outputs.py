"""The output directory's safety: never overwrite by accident, resume an interrupted run, clean up after a failed one.

A run records each finished shard in a manifest folder beside the shards as it completes (one small
file per shard, so it works on object stores, which cannot append); summary.json is written last and
the manifest removed. A folder with a manifest and no summary is an unfinished run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from prep import storage
from prep.errors import ConfigError, WriteError
from prep.stages import ShardPlan, ShardResult

log = logging.getLogger(__name__)
MANIFEST = ".prep-manifest"
SUMMARY = "summary.json"
LABELS_CSV = "labels.csv"
_HEADER = "run.json"


def foreign_entries(output_dir: str) -> list[str]:
    """Everything in the folder except Hydra's own files (its .hydra folder and the run's log)."""
    return [n for n in storage.listdir(output_dir) if n != ".hydra" and not n.endswith(".log")]


def plan_digest(plan: ShardPlan) -> str:
    """What a shard holds, so resume never keeps a shard planned from other inputs."""
    text = "\n".join(f"{item.name}\t{item.label}" for item in plan.items)
    return hashlib.sha256(f"{plan.path}\n{plan.split}\n{text}".encode()).hexdigest()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with storage.open_read(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Manifest:
    """Finished shards, one JSON file each in `.prep-manifest/`, after a header with the config fingerprint."""

    def __init__(self, output_dir: str, fingerprint: str) -> None:
        self.dir = storage.join(output_dir, MANIFEST)
        self.fingerprint = fingerprint

    def read(self) -> dict[str, dict]:
        try:
            header = json.loads(storage.read_bytes(storage.join(self.dir, _HEADER)))
        except (OSError, json.JSONDecodeError):
            header = {}
        if header.get("fingerprint") != self.fingerprint:
            raise ConfigError(
                f"resume=true: {self.dir} was written with another config (fingerprint {header.get('fingerprint')}); "
                "resume with the same config, or pass overwrite=true to start again"
            )
        entries: dict[str, dict] = {}
        for name in storage.listdir(self.dir):
            if name == _HEADER or not name.endswith(".json"):
                continue
            try:
                entry = json.loads(storage.read_bytes(storage.join(self.dir, name)))
            except (OSError, json.JSONDecodeError):  # cut short by a crash: that shard is simply redone
                continue
            entries[entry["result"]["path"]] = entry
        return entries

    def start(self) -> None:
        storage.remove_tree(self.dir)
        storage.makedirs(self.dir)
        storage.write_bytes(storage.join(self.dir, _HEADER), json.dumps({"fingerprint": self.fingerprint}).encode())

    def add(self, plan: ShardPlan, result: ShardResult) -> None:
        name = hashlib.sha256(result.path.encode()).hexdigest()[:24] + ".json"
        entry = {"plan": plan_digest(plan), "result": result.as_dict()}
        storage.write_bytes(storage.join(self.dir, name), json.dumps(entry, sort_keys=True).encode())

    def remove(self) -> None:
        storage.remove_tree(self.dir)


def _previous_outputs(output_dir: str) -> set[str]:
    """What an earlier prep run wrote here, by its summary and manifest."""
    paths = {SUMMARY, LABELS_CSV}
    try:
        summary = json.loads(storage.read_bytes(storage.join(output_dir, SUMMARY)))
        paths.update(s["path"] for s in summary.get("shards", []))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        pass
    manifest = storage.join(output_dir, MANIFEST)
    for name in storage.listdir(manifest):
        try:
            paths.add(json.loads(storage.read_bytes(storage.join(manifest, name)))["result"]["path"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            pass
    return paths | {p + ".idx" for p in paths}


def _remove_previous(output_dir: str) -> None:
    """Delete what an earlier prep run wrote here (summary, manifest, shards, index files, partials); nothing else."""
    for rel in _previous_outputs(output_dir):
        storage.remove(storage.join(output_dir, rel))
    storage.remove_tree(storage.join(output_dir, MANIFEST))
    remove_partials(output_dir)


def remove_partials(output_dir: str) -> None:
    if storage.is_url(output_dir):
        return  # remote shards are uploaded whole: there are no partial objects
    for folder, _, files in os.walk(storage.local(output_dir)):
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
        storage.makedirs(output_dir)
        if not keep:
            manifest.start()
    except OSError as err:
        raise WriteError(f"output_dir={output_dir}: cannot write there: {err.strerror or err}") from None
    return keep


def reusable(output_dir: str, plan: ShardPlan, entry: dict | None) -> ShardResult | None:
    """The recorded result of a finished shard whose plan and bytes are unchanged, else None (write it again)."""
    if entry is None or entry.get("plan") != plan_digest(plan):
        return None
    result = ShardResult.from_dict(entry["result"])
    path = storage.join(output_dir, result.path)
    try:
        if file_sha256(path) != result.sha256:
            return None
    except OSError:
        return None
    if not all(storage.exists(storage.join(output_dir, extra)) for extra in result.extra_files):
        return None
    return result


def clean_unfinished(output_dir: str, plans: list[ShardPlan]) -> None:
    """After a failed or interrupted run: no partial shard is left behind (workers killed mid-shard leave them)."""
    if storage.is_url(output_dir):
        return
    for plan in plans:
        for path in (storage.join(output_dir, plan.path + ".partial"), storage.join(output_dir, plan.path + ".idx.partial")):
            storage.remove(path)
