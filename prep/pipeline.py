"""The only place stages meet: read -> split -> plan -> shard tasks -> summary.json."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

from prep import summary as summaries
from prep.errors import ConfigError, EncodeError
from prep.plan import plan_shards
from prep.reader import read_items
from prep.stages import ShardPlan, ShardResult, Skip
from prep.writers import record_values

log = logging.getLogger(__name__)
ON_ERROR = ("skip", "fail")


@dataclass(frozen=True)
class Job:
    """What every shard task shares; plain picklable stages, no global state."""

    source: object
    encoder: object
    writer: object
    output_dir: str
    class_names: list[str] | None
    on_error: str


def write_shard(job: Job, plan: ShardPlan) -> ShardResult:
    """One shard task: read, encode and write the plan's items, in order, to one shard."""
    skipped: list[Skip] = []
    counts: Counter = Counter()
    formats: Counter = Counter()
    with job.writer.open(job.output_dir, plan.path) as sink:
        for item in plan.items:
            try:
                encoded = job.encoder.encode(job.source.read(item.ref))
            except EncodeError as err:
                if job.on_error == "fail":
                    raise EncodeError(f"{item.name}: {err}") from None
                skipped.append(Skip(item.name, str(err)))
                continue
            sink.write(record_values(item, encoded, job.class_names))
            counts[item.label] += 1
            formats[encoded.format] += 1
        size, sha256, extra = sink.commit()
    return ShardResult(plan.path, plan.split, sink.num_records, size, sha256, dict(counts), dict(formats), skipped, extra)


def convert(
    *,
    name: str,
    source,
    labels,
    splitter,
    encoder,
    writer,
    executor,
    output_dir: str,
    limit: int | None = None,
    on_error: str = "skip",
    overwrite: bool = False,
    run_info: dict | None = None,
    progress: bool = True,
) -> dict:
    """Convert and write summary.json last; returns the summary. Everything is checked before the first shard."""
    started = time.perf_counter()
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error={on_error!r}: choose one of {list(ON_ERROR)}")
    if not name or "/" in name:
        raise ConfigError(f"name={name!r}: the dataset name must be a plain word, e.g. name=my_photos")
    encoder.check(source)
    summaries.prepare_output_dir(output_dir, overwrite)

    listing = read_items(source, labels, limit)
    for skip in listing.skipped:
        if on_error == "fail":
            raise EncodeError(f"{skip.source}: {skip.reason}")
        log.warning("skipped %s: %s", skip.source, skip.reason)
    if listing.unlabelled:
        log.warning(
            "%d image(s) in %s are not in the label file and were left out, e.g. %s",
            len(listing.unlabelled), source.describe(), ", ".join(listing.unlabelled[:3]),
        )
    splits = splitter.assign(listing.items)
    plans = plan_shards(name, splits, writer)
    log.info("%d images -> %d shards in %s", len(listing.items), len(plans), output_dir)

    job = Job(source, encoder, writer, output_dir, listing.class_names, on_error)
    results: list[ShardResult] = []
    bar = _progress(sum(len(p.items) for p in plans), progress)
    try:
        for result in executor.map(write_shard, job, plans):
            results.append(result)
            for skip in result.skipped:
                log.warning("skipped %s: %s", skip.source, skip.reason)
            bar.update(result.num_records + len(result.skipped))
    finally:
        bar.close()

    order = {plan.path: i for i, plan in enumerate(plans)}
    results.sort(key=lambda r: order[r.path])
    seconds = time.perf_counter() - started
    summary = summaries.build(
        name=name,
        writer=writer,
        listing=listing,
        splits=list(splits),
        results=results,
        seconds=seconds,
        run_info={**(run_info or {}), "split_notes": list(getattr(splitter, "notes", [])), "encoder": encoder.describe()},
    )
    summaries.write_labels_csv(output_dir, summary, listing.class_names)
    summaries.write(output_dir, summary)
    log.info(
        "wrote %d records (%d skipped) in %d shards to %s in %.2f s (%.0f records/s)",
        summary["num_records"], len(summary["skipped"]), len(results), output_dir, seconds, summary["records_per_second"],
    )
    return summary


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", disable=None if enabled else True, desc="converting", leave=False)

