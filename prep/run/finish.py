"""The last step: the run-level files (the format's metadata, report.html, labels.csv) and summary.json, in
that order. summary.json is written last, so its presence means the run is complete; verify=true re-reads
every shard before it."""

from __future__ import annotations

import hashlib
import logging

from prep.core import interrupts, storage
from prep.core.errors import WriteError
from prep.core.values import ShardResult
from prep.run import outputs
from prep.run.context import Settings, Stages
from prep.run.listing import Listing
from prep.run.planning import RunPlan
from prep.run.progress import size_text
from prep.runfiles import summary as summaries
from prep.runfiles.names import LABELS_CSV, REPORT, SUMMARY

log = logging.getLogger(__name__)


def finish_run(stages: Stages, run: Settings, listing: Listing, plan: RunPlan, results: list[ShardResult], kept: set[str],
               seconds: float, manifest: outputs.Manifest) -> dict:
    writer, output_dir = stages.writer, run.output_dir
    summary = summaries.build(
        name=run.name,
        writer=writer,
        listing=listing,
        splits=list(plan.splits),
        results=results,
        seconds=seconds,
        skipped=plan.skipped,
        run_info={**plan.run_info, "split_notes": list(stages.splitter.notes), "encoder": stages.encoder.describe()},
    )
    _check_kept(output_dir, summary, [r for r in results if r.path in kept])
    summary["metadata_files"] = _write_metadata(output_dir, writer, summary, listing, plan.metadata_paths)
    if run.verify:
        from prep.tools.verify import verify_run

        # the run's own decompression-bomb limit, so a run allowed larger images also verifies them
        failures = [line for ok, line in verify_run(output_dir, summary, decode=True, max_pixels=stages.encoder.max_pixels) if not ok]
        if failures:
            raise WriteError(f"verify=true: {len(failures)} check(s) failed, no summary.json written: {failures[0]}")
        log.info("verify: every shard re-read and checked")
    interrupts.check()  # the last point to stop: summary.json makes the run finished
    # about to be written
    manifest.start([shard.path for shard in plan.shards], owned=[*plan.metadata_paths, REPORT, LABELS_CSV, SUMMARY])
    _write_report(output_dir, summary, stages)
    summaries.write_labels_csv(output_dir, summary, listing.class_names)
    summaries.write(output_dir, summary)
    manifest.remove()
    total_bytes = sum(shard["bytes"] for shard in summary["shards"])
    log.info(
        "wrote %d records (%d skipped) in %d shards, %s, to %s in %.2f s (%.0f records/s, %.1f MB/s)",
        summary["num_records"], len(summary["skipped"]), len(summary["shards"]), size_text(total_bytes), output_dir, seconds,
        summary["records_per_second"], total_bytes / seconds / 1e6 if seconds > 0 else 0.0,
    )
    return summary


def _check_kept(output_dir: str, summary: dict, kept: list[ShardResult]) -> None:
    """Shards a resumed run kept are taken from the manifest's records of them; what summary.json will say of
    each is read back from the shard first (records, bytes, sha256, labels, formats), so a record edited (or
    damaged) since cannot make a summary that differs from the shards."""
    if not kept:
        return
    from prep.tools.verify import RecordRules, check_shard

    rules = RecordRules(summary)
    entries = {shard["path"]: shard for shard in summary["shards"]}
    for result in kept:
        check = check_shard(output_dir, entries[result.path], summary, rules=rules)
        problem = check.problem
        if problem is None and rules.label_key is not None and dict(check.labels) != result.class_counts:
            problem = "its records' labels differ from the run's record of them"
        if problem is None and rules.format_key is not None and dict(check.formats) != result.formats:
            problem = "its records' image formats differ from the run's record of them"
        if problem:
            raise WriteError(f"resume=true: the finished shard {result.path} is not what the run recorded ({problem}); start again with overwrite=true")
    log.info("resume: %d kept shard(s) read back and as recorded", len(kept))


def _write_report(output_dir: str, summary: dict, stages: Stages) -> None:
    """report.html, before summary.json; a report that cannot be made is a warning, never a failed run."""
    from prep.tools import report

    report.write_for_run(output_dir, summary, stages.source, stages.encoder.max_pixels)


def _write_metadata(output_dir: str, writer, summary: dict, listing: Listing, planned: list[str]) -> list[dict]:
    """The format's run-level files (planned, and recorded in the manifest, before the first shard), as
    summary.json lists them: path, bytes, sha256."""
    files = writer.metadata_files(summary, listing)
    if sorted(files) != sorted(planned):
        raise WriteError(f"{writer.format} writer: wrote {sorted(files)}, planned {sorted(planned)} (a bug in prep)")
    listed = []
    for path in sorted(files):
        data = files[path]
        try:
            storage.write_bytes(storage.join(output_dir, path), data, root=output_dir)
        except OSError as err:
            raise WriteError(f"{storage.join(output_dir, path)}: cannot write: {err.strerror or err}") from None
        listed.append({"path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return listed
