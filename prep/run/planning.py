"""The planning step: every item of every split gets a shard, the format's run-level files are placed,
skips are counted against max_skipped, and plan.json's content is built. Also the dry run's ending: the
plan shown and saved, nothing converted."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prep.core import storage
from prep.core.errors import InputError
from prep.core.values import ShardPlan, Skip
from prep.run import outputs
from prep.run import plan_file as runplan
from prep.run.capped import CappedLog
from prep.run.content import Content, split_info
from prep.run.context import Settings, Stages
from prep.run.listing import Listing
from prep.run.shard_plan import check_metadata_paths, plan_shards
from prep.run.skips import SkipLog, check_skips, skip_limit
from prep.runfiles.names import PLAN

log = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """Everything decided before the output folder is touched."""

    splits: dict
    shards: list[ShardPlan]
    metadata_paths: list[str]  # the format's run-level files (dataset_info.json, a wids index), planned
    skipped: list[Skip]  # by planning and the scan; shard tasks add theirs
    limit_skipped: int | None  # max_skipped as a number of images
    run_info: dict  # summary.json's run-level facts: overrides, fingerprint, split and scan records, warnings
    document: dict  # plan.json


def plan_run(stages: Stages, run: Settings, listing: Listing, content: Content | None, splits: dict) -> RunPlan:
    writer, splitter, source = stages.writer, stages.splitter, stages.source
    shards = plan_shards(run.name, splits, writer)
    metadata_paths = writer.metadata_paths(run.name, [split for split, items in splits.items() if items], listing)
    check_metadata_paths(metadata_paths, shards, writer.pattern)
    limit_skipped = skip_limit(run.max_skipped, len(listing.items) + len(listing.skipped))
    skipped = list(listing.skipped) + (content.skipped if content else [])
    said = SkipLog()
    for skip in listing.skipped:
        said.add(skip)
    said.end()
    if listing.unlabelled:
        log.warning(
            "%d image(s) in %s are not in the label file and were left out, e.g. %s",
            listing.unlabelled_count, source.describe(), ", ".join(listing.unlabelled[:3]),
        )
    if listing.ignored:
        log.warning(
            "%d file(s) in %s are not converted (hidden, not an image extension, or unusable), e.g. %s",
            len(listing.ignored), source.describe(), ", ".join(listing.ignored[:3]),
        )
    info = split_info(splitter, splits, content)
    warnings = runplan.warnings_for(listing, splits, splitter, info.get("duplicates"))
    items = content.items if content else listing.items
    document = runplan.build(
        name=run.name, writer=writer, listing=listing, splits=splits, plans=shards, skipped=skipped,
        duplicates=info.get("duplicates"), balance=info.get("split_balance", {}), scan=info.get("scan"), warnings=warnings,
        sizes=runplan.estimated_sizes(items, source, stages.encoder, content.sizes if content else None) if run.dry_run or content else None,
    )
    _log_warnings(warnings, splitter.note_kinds)
    try:
        check_skips(skipped, limit_skipped, run.max_skipped)
    except InputError as err:
        if not run.dry_run:
            raise
        document["warnings"].append(f"the real run would stop: {err}")
    return RunPlan(splits, shards, metadata_paths, skipped, limit_skipped, {**run.run_info, **info, "warnings": warnings}, document)


def _log_warnings(warnings: list[str], note_kinds: list[str]) -> None:
    """Every warning once; the splitter's notes of one kind (one per class, say) capped: a few lines, then a count."""
    capped: dict[str, CappedLog] = {}
    for index, warning in enumerate(warnings):
        kind = note_kinds[index] if index < len(note_kinds) else warning
        if kind not in capped:
            capped[kind] = CappedLog(log, f"{{count}} more notes like the above ({kind}): plan.json and summary.json list every one")
        capped[kind].warning("%s", warning)
    for said in capped.values():
        said.end()


def end_dry_run(plan: RunPlan, run: Settings, lock: outputs.RunLock) -> dict:
    """Show the plan and save plan.json (under the run's lock); nothing of an earlier run is deleted or replaced,
    not even its plan.json or saved config: a folder that holds a run (overwrite=true or resume=true let the
    check pass) gets no plan.json."""
    outputs.prepare(run.output_dir, overwrite=run.overwrite, resume=run.resume, fingerprint=run.fingerprint, check_only=True)
    print(runplan.table(plan.document))
    if outputs.holds_run(run.output_dir):
        log.info("dry run: nothing converted; plan.json not written, output_dir=%s holds a run (left as it is)", run.output_dir)
        return plan.document
    lock.mark()  # plan.json, .hydra/ and prep.log go in: the folder is prep's
    if run.on_claim is not None:
        run.on_claim()
    runplan.write(run.output_dir, plan.document)
    log.info("dry run: nothing converted; the plan is in %s", storage.join(run.output_dir, PLAN))
    return plan.document
