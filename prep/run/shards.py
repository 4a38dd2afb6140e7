"""The writing step: shard tasks (read, encode and write one shard's items, in order) run by the executor,
with finished shards of an interrupted run kept for resume and half-written ones removed on any stop."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prep.core import interrupts
from prep.core.errors import EncodeError
from prep.core.values import ShardPlan, ShardResult, ShardStats, Skip
from prep.executors.local import count_processed
from prep.run import memory, outputs
from prep.run import plan_file as runplan
from prep.run.context import Settings, Stages
from prep.run.listing import Listing
from prep.run.planning import RunPlan
from prep.run.progress import bar
from prep.run.skips import SkipLog, check_skips
from prep.writers import record_values

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """What every shard task shares; plain picklable stages, no global state."""

    source: object
    encoder: object
    writer: object
    output_dir: str
    class_names: list[str] | None
    on_error: str
    threads: int = 1  # encoding threads per shard task (decoders and encoders release the GIL)


def ordered_map(fn: Callable, items: Iterable, threads: int) -> Iterator:
    """fn over items on a few threads, results in input order, at most a small window in flight (bounded memory)."""
    if threads <= 1:
        yield from map(fn, items)
        return
    window = 2 * threads
    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def write_shard(job: Job, plan: ShardPlan) -> ShardResult:
    """One shard task: read, encode and write the plan's items, in order, to one shard.

    The shard is recorded in the run's manifest just before it gets its final name, so a shard under a
    final name is always one the run knows about, even if the driver is killed a moment later.
    """
    skipped: list[Skip] = []
    stats = ShardStats()
    stamps: list = []

    def encode(item):
        stamped = None
        try:
            payload, stamped = job.source.read_stamped(item.ref)
            return item, stamped, job.encoder.encode(payload)
        except EncodeError as err:
            return item, stamped if stamped is not None else job.source.stamp(item.ref), err

    def record(result: ShardResult) -> None:
        outputs.record_shard(job.output_dir, plan, job.class_names, outputs.stamp_digest(stamps), result)

    reported = 0  # bytes written when the progress counter was last moved
    with job.writer.open(job.output_dir, plan.path) as sink:
        for done, (item, stamped, encoded) in enumerate(ordered_map(encode, plan.items, job.threads), start=1):
            stamps.append(stamped)
            if done % 32 == 0:
                count_processed(32, sink.bytes_written - reported)
                reported = sink.bytes_written
            if isinstance(encoded, EncodeError):
                if job.on_error == "fail":
                    raise EncodeError(f"{item.name}: {encoded}") from None
                skipped.append(Skip(item.name, str(encoded)))
                continue
            sink.write(record_values(item, encoded, job.class_names))
            stats.add(item.label, encoded)
        count_processed(len(plan.items) % 32, sink.bytes_written - reported)
        if sink.num_records == 0:  # every image of this shard was skipped: publish no empty shard
            sink.abort()
            result = ShardResult(plan.path, plan.split, 0, 0, "", {}, {}, skipped, [], {})
            record(result)
            return result

        def publish(size: int, sha256: str, extra: list[str]) -> None:
            record(stats.result(plan.path, plan.split, sink.num_records, size, sha256, skipped, extra))

        size, sha256, extra = sink.commit(before_publish=publish)
    return stats.result(plan.path, plan.split, sink.num_records, size, sha256, skipped, extra)


def write_shards(
    stages: Stages, run: Settings, listing: Listing, plan: RunPlan, recorded: dict, manifest: outputs.Manifest
) -> tuple[list[ShardResult], set[str]]:
    """Every planned shard, in plan order, and the paths of those kept: the ones an interrupted run finished (and
    whose inputs are unchanged) kept, the rest written by the executor. On an error or Ctrl-C the workers are stopped first, then what
    they left half-written is removed; the finished shards stay for resume=true."""
    source, output_dir = stages.source, run.output_dir
    results: list[ShardResult] = []
    todo: list[ShardPlan] = []
    for shard in plan.shards:
        entry = recorded.get(shard.path)
        stamps = outputs.stamp_digest(source.stamp(item.ref) for item in shard.items) if entry else None
        kept = outputs.reusable(output_dir, shard, entry, listing.class_names, stamps)
        if kept is not None:
            results.append(kept)
        else:
            todo.append(shard)
    if recorded or (run.resume and manifest.header()):
        # Also when no shard was recorded: an overwrite interrupted while deleting left its list of files
        # still to delete in the manifest, and they go now.
        outputs.settle_resume(output_dir, manifest, recorded, {r.path for r in results}, plan.shards)
        log.info("resume: %d of %d shards are finished and unchanged, writing %d", len(results), len(plan.shards), len(todo))
    manifest.start([p.path for p in plan.shards], owned=plan.metadata_paths)
    runplan.write(output_dir, plan.document)
    log.info("%d images -> %d shards in %s", sum(len(p.items) for p in plan.shards), len(plan.shards), output_dir)

    so_far = plan.skipped + [s for r in results for s in r.skipped]  # grows with each shard: checked once per shard
    check_skips(so_far, plan.limit_skipped, run.max_skipped)
    threads = stages.executor.workers if stages.encoder.cpu_bound else 1
    job = Job(source, stages.encoder, stages.writer, output_dir, listing.class_names, run.on_error, threads)
    results += _run_tasks(stages.executor, job, todo, so_far, plan.limit_skipped, run)
    order = {shard.path: i for i, shard in enumerate(plan.shards)}
    kept = {r.path for r in results} - {shard.path for shard in todo}
    results.sort(key=lambda r: order[r.path])
    return results, kept


def _run_tasks(executor, job: Job, todo: list[ShardPlan], so_far: list[Skip], limit_skipped, run: Settings) -> list[ShardResult]:
    by_path = {shard.path: shard for shard in todo}
    shown = bar(sum(len(p.items) for p in todo), run.progress)
    bar_lock = threading.Lock()
    finished_images = finished_bytes = 0
    writing = time.perf_counter()

    def advance(processed: int, nbytes: int) -> None:
        with bar_lock:  # the executor's watcher thread and this loop both move the bar, never backwards
            seconds = time.perf_counter() - writing
            if seconds > 0 and nbytes:
                shown.set_postfix_str(f"{nbytes / seconds / 1e6:,.0f} MB/s", refresh=False)
            shown.update(max(0, processed - shown.n))

    memory.trim()  # what planning freed goes back to the system before the shards are written
    results: list[ShardResult] = []
    running = executor.map(write_shard, job, todo, progress=advance)
    said = SkipLog()
    try:
        for result in running:
            interrupts.check()
            results.append(result)
            for skip in result.skipped:
                said.add(skip)
            if result.num_records == 0:
                log.warning("shard %s was not written: every one of its images was skipped", result.path)
            finished_images += len(by_path[result.path].items)
            finished_bytes += result.bytes
            advance(finished_images, finished_bytes)
            so_far.extend(result.skipped)
            check_skips(so_far, limit_skipped, run.max_skipped)
    except BaseException:
        with interrupts.held():
            running.close()  # stop the workers first, then remove what they left half-written
            outputs.clean_unfinished(job.output_dir, todo)
        raise
    finally:
        shown.close()
        said.end()
    return results
