"""The flow of a run, on one screen: check -> list and label -> scan -> split -> plan -> claim the output
folder -> write the shards -> run-level files and summary.json.

Each step is a function of prep/run/ (or a few lines here); this module only strings them together, so the
order of a run, and what is decided before the output folder is touched, can be read in one place. A dry
run is the same flow with another ending: the plan is shown and saved, nothing is converted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prep.core.errors import EncodeError, InputError
from prep.run import memory, outputs
from prep.run.checks import check_run
from prep.run.content import Content, scan_content
from prep.run.context import Settings, Stages
from prep.run.finish import finish_run
from prep.run.listing import Listing, read_items
from prep.run.planning import end_dry_run, plan_run
from prep.run.shards import write_shards


def convert(*, name: str, source, labels, splitter, encoder, writer, executor, output_dir: str, limit: int | None = None,
            on_error: str = "skip", max_skipped=None, overwrite: bool = False, resume: bool = False, verify: bool = False,
            run_info: dict | None = None, progress: bool = True, on_claim: Callable[[], None] | None = None, dry_run: bool = False) -> dict:
    """Convert, writing summary.json last, and return the summary (with dry_run: plan.json's content).

    Everything is checked before the first shard. on_claim is called once the run holds output_dir (locked,
    and found empty, resumable or replaceable): the CLI saves the run's config and log there only then, so a
    refused run changes nothing. The executor's workers are started first, while this process is small.
    """
    stages = Stages(source, labels, splitter, encoder, writer, executor)
    run = Settings(name, output_dir, limit, on_error, max_skipped, overwrite, resume, verify, progress, dry_run, dict(run_info or {}), on_claim)
    memory.fixed_threshold()
    finished = False
    try:
        if not dry_run or splitter.scans:
            executor.start()
        result = run_flow(stages, run)
        finished = True
        return result
    finally:
        executor.close(abort=not finished)  # stopped by an error or Ctrl-C: the workers are ended, not waited for


def run_flow(stages: Stages, run: Settings) -> dict:
    started = time.perf_counter()
    check_run(stages, run)
    listing = list_images(stages, run)
    content = scan_content(listing, stages, run) if stages.splitter.scans else None
    splits = split(stages, listing, content)
    plan = plan_run(stages, run, listing, content, splits)
    # Inputs, stages and plan are all checked: only now is the output folder touched, under its lock.
    # Checked once before the lock (a refused run leaves not even a lock file), and again under it.
    outputs.prepare(run.output_dir, overwrite=run.overwrite, resume=run.resume, fingerprint=run.fingerprint, check_only=True)
    with outputs.RunLock(run.output_dir) as lock:
        if run.dry_run:
            return end_dry_run(plan, run, lock)
        recorded = outputs.prepare(run.output_dir, overwrite=run.overwrite, resume=run.resume, fingerprint=run.fingerprint)
        lock.mark()  # the folder is this run's now
        if run.on_claim is not None:
            run.on_claim()
        manifest = outputs.Manifest(run.output_dir, run.fingerprint)
        results, kept = write_shards(stages, run, listing, plan, recorded, manifest)
        return finish_run(stages, run, listing, plan, results, kept, time.perf_counter() - started, manifest)


def list_images(stages: Stages, run: Settings) -> Listing:
    """The item table from the source and the label format; what planning found unusable is a skip, or the
    end of the run with on_error=fail."""
    splitter, labels, source = stages.splitter, stages.labels, stages.source
    splitter.prepare(labels)
    if splitter.columns and labels.has_columns:
        labels.select_columns(splitter.columns)
    listing = read_items(source, labels, run.limit)
    source.release()  # every name is resolved: the folder's listing is not needed again
    stages.writer.check_labels(listing)  # a label the stored type cannot hold stops the run here, before any file
    if run.on_error == "fail" and listing.skipped:
        skip = listing.skipped[0]
        raise EncodeError(f"{skip.where}: {skip.source}: {skip.reason}")
    if splitter.predefined:
        for item in listing.items:  # a misplaced image or an unknown split value is said before the scan
            splitter.split_of(item, listing.fields)
    return listing


def split(stages: Stages, listing: Listing, content: Content | None) -> dict:
    """The splitter's assignment of the items the scan left (every listed item where there was no scan)."""
    items, units = (content.items, content.units) if content else (listing.items, [])
    if not items:
        reasons = sorted({s.reason for s in content.skipped})
        raise InputError(f"no usable images: the content scan left out every image ({'; '.join(reasons)[:300]})")
    return stages.splitter.assign(items, units, fields=listing.fields, class_names=listing.class_names)
