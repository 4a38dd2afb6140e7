"""The only place stages meet: read -> split -> plan -> shard tasks -> summary.json."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prep import interrupts, memory, outputs, runplan, storage
from prep import summary as summaries
from prep.errors import ConfigError, EncodeError, InputError, WriteError
from prep.executors import count_processed
from prep.plan import check_metadata_paths, plan_shards
from prep.reader import read_items
from prep.split import Splitter
from prep.stages import ShardPlan, ShardResult, ShardStats, Skip
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
    threads: int = 1  # encoding threads per shard task (decoders and encoders release the GIL)


def stamp(source, ref) -> object:
    """What resume compares to know a source file is unchanged (size and modification time), or None."""
    fn = getattr(source, "stamp", None)
    return fn(ref) if fn is not None else None


def read_stamped(source, ref):
    """The payload and its stamp, from one open of the file where the source can (no second stat)."""
    fn = getattr(source, "read_stamped", None)
    if fn is not None:
        return fn(ref)
    return source.read(ref), stamp(source, ref)


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
            payload, stamped = read_stamped(job.source, item.ref)
            return item, stamped, job.encoder.encode(payload)
        except EncodeError as err:
            return item, stamped if stamped is not None else stamp(job.source, item.ref), err

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


def skip_limit(max_skipped, total: int) -> int | None:
    """max_skipped as a number of images: a count (>= 1, or 0 for none) or a fraction of all images (< 1)."""
    if max_skipped is None:
        return None
    if isinstance(max_skipped, bool) or not isinstance(max_skipped, (int, float)) or max_skipped < 0:
        raise ConfigError(f"max_skipped={max_skipped!r}: give a count (e.g. 100), a fraction below 1 (e.g. 0.01), or null for no limit")
    return int(max_skipped) if max_skipped >= 1 or max_skipped == 0 else int(max_skipped * total)


def convert(*, executor, **kwargs) -> dict:
    """Convert and write summary.json last; returns the summary (see _convert).

    The executor's workers are started first, while this process is small, and stopped at the end.
    """
    memory.fixed_threshold()
    start = getattr(executor, "start", None)
    finished = False
    try:
        if start is not None and (not kwargs.get("dry_run") or _scans(kwargs.get("splitter"))):
            start()
        summary = _convert(executor=executor, **kwargs)
        finished = True
        return summary
    finally:
        close = getattr(executor, "close", None)
        if close is not None:
            close(abort=not finished)  # stopped by an error or Ctrl-C: the workers are ended, not waited for


def _convert(
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
    max_skipped=None,
    overwrite: bool = False,
    resume: bool = False,
    verify: bool = False,
    run_info: dict | None = None,
    progress: bool = True,
    on_claim: Callable[[], None] | None = None,
    dry_run: bool = False,
) -> dict:
    """Convert and write summary.json last; returns the summary. Everything is checked before the first shard.

    on_claim is called once the run holds output_dir (locked, and found empty, resumable or replaceable):
    the CLI saves the run's config and log there only then, so a refused run changes nothing.
    """
    started = time.perf_counter()
    run_info = dict(run_info or {})
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error={on_error!r}: choose one of {list(ON_ERROR)}")
    check_name(name)
    skip_limit(max_skipped, 1)
    encoder.check(source)
    outputs.check_not_inputs(output_dir, input_paths(source, labels))
    check_paths = getattr(executor, "check_paths", None)  # a multi-node Ray cluster refuses local paths
    if check_paths is not None:
        check_paths(output_dir, input_paths(source, labels))

    prepare_split = getattr(splitter, "prepare", None)
    if prepare_split is not None:
        prepare_split(labels)
        if getattr(splitter, "columns", ()) and getattr(labels, "has_columns", False):
            labels.columns = dict(splitter.columns)
    listing = read_items(source, labels, limit)
    release = getattr(source, "release", None)
    if release is not None:
        release()  # every name is resolved: the folder's listing is not needed again
    writer.check_labels(listing)  # a label the stored type cannot hold stops the run here, before any file
    for skip in listing.skipped:
        if on_error == "fail":
            raise EncodeError(f"{skip.where}: {skip.source}: {skip.reason}")
    fingerprint = run_info.get("config_fingerprint", "")
    content = None
    if getattr(splitter, "predefined", False):
        for item in listing.items:  # a misplaced image or an unknown split value is said before the scan
            splitter.split_of(item, listing.fields)
    if _scans(splitter):
        # A refused output folder is said before the scan reads every image, not after.
        outputs.prepare(output_dir, overwrite=overwrite, resume=resume, fingerprint=fingerprint, check_only=True)
        content = _content_scan(listing, source, splitter, executor, encoder, on_error, progress)
    items, units = (content.items, content.units) if content else (listing.items, [])
    if not items:
        reasons = sorted({s.reason for s in content.skipped})
        raise InputError(f"no usable images: the content scan left out every image ({'; '.join(reasons)[:300]})")
    if isinstance(splitter, Splitter):
        splits = splitter.assign(items, units, fields=listing.fields, class_names=listing.class_names)
    else:
        splits = splitter.assign(items)
    plans = plan_shards(name, splits, writer)
    metadata_paths = writer.metadata_paths(name, [split for split, items in splits.items() if items], listing)
    check_metadata_paths(metadata_paths, plans, writer.pattern)
    limit_skipped = skip_limit(max_skipped, len(listing.items) + len(listing.skipped))
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
    split_info = _split_info(splitter, splits, content)
    warnings = runplan.warnings_for(listing, splits, splitter, split_info.get("duplicates"))
    plan = runplan.build(
        name=name, writer=writer, listing=listing, splits=splits, plans=plans, skipped=skipped,
        duplicates=split_info.get("duplicates"), balance=split_info.get("split_balance", {}), scan=split_info.get("scan"),
        warnings=warnings, sizes=runplan.estimated_sizes(items, source, encoder, content.sizes if content else None) if dry_run or content else None,
    )
    for warning in warnings[len(getattr(splitter, "notes", [])):]:  # the splitter's own notes are logged already
        log.warning("%s", warning)
    if dry_run:
        try:
            _check_skips(skipped, limit_skipped, max_skipped)
        except InputError as err:
            plan["warnings"].append(f"the real run would stop: {err}")
    else:
        _check_skips(skipped, limit_skipped, max_skipped)
    # Inputs, stages and plan are all checked: only now is the output folder touched, under its lock.
    # Checked once before the lock (a refused run leaves not even a lock file), and again under it.
    outputs.prepare(output_dir, overwrite=overwrite, resume=resume, fingerprint=fingerprint, check_only=True)
    with outputs.RunLock(output_dir):
        if dry_run:
            # Nothing of an earlier run is deleted or replaced, not even its plan.json or saved config: a folder
            # that holds a run (overwrite=true or resume=true let the check pass) gets no plan.json.
            outputs.prepare(output_dir, overwrite=overwrite, resume=resume, fingerprint=fingerprint, check_only=True)
            print(runplan.table(plan))
            if outputs.holds_run(output_dir):
                log.info("dry run: nothing converted; plan.json not written, output_dir=%s holds a run (left as it is)", output_dir)
                return plan
            if on_claim is not None:
                on_claim()
            runplan.write(output_dir, plan)
            log.info("dry run: nothing converted; the plan is in %s", storage.join(output_dir, outputs.PLAN))
            return plan
        recorded = outputs.prepare(output_dir, overwrite=overwrite, resume=resume, fingerprint=fingerprint)
        if on_claim is not None:
            on_claim()
        return _run(
            name=name, source=source, listing=listing, splits=splits, plans=plans, metadata_paths=metadata_paths, recorded=recorded, resuming=resume, skipped=skipped,
            splitter=splitter, encoder=encoder, writer=writer, executor=executor, output_dir=output_dir,
            on_error=on_error, max_skipped=max_skipped, limit_skipped=limit_skipped, verify=verify,
            run_info={**run_info, **split_info, "warnings": warnings}, progress=progress, started=started, run_plan=plan,
        )


@dataclass
class Content:
    """What the content scan left for the splitter: the items (bad files and conflicting copies taken out),
    the groups that must share a split, and the file sizes (for the dry run's estimate)."""

    items: list
    units: list[list[int]]
    skipped: list[Skip]
    duplicates: dict
    scan: dict
    sizes: dict[str, int]


def _scans(splitter) -> bool:
    return getattr(splitter, "dedup", "none") != "none" or getattr(splitter, "scan", False)


def _content_scan(listing, source, splitter, executor, encoder, on_error: str, progress: bool) -> Content:
    from prep import dedup, scan
    from prep.encoders import DEFAULT_MAX_PIXELS

    mode = getattr(splitter, "dedup", "none")
    items = listing.items
    bar = _progress(len(items), progress, "scanning")
    try:
        report = scan.scan(
            items, source, executor, hashing=mode != "none", perceptual=mode == "near",
            max_pixels=getattr(encoder, "max_pixels", DEFAULT_MAX_PIXELS), progress=lambda n, _: bar.update(max(0, n - bar.n)),
        )
    finally:
        bar.close()
    summary = report.summary()
    rate = summary["bytes"] / report.seconds / 1e6 if report.seconds > 0 else 0.0
    log.info(
        "scan: %d images, %.1f MB read in %.2f s (%.0f MB/s)%s", summary["images"], summary["bytes"] / 1e6, report.seconds, rate,
        "" if mode == "none" else f", hashed ({mode})",
    )
    skipped: list[Skip] = []
    good, good_entries = [], []
    said = SkipLog()
    for index, entry in enumerate(report.entries):
        if entry.error is not None:
            name = items[index].name
            if on_error == "fail":
                raise EncodeError(f"{name}: {entry.error}")
            skipped.append(Skip(name, entry.error))
            said.add(skipped[-1])
        else:
            good.append(index)
            good_entries.append(entry)
    said.end()
    good_items = items.take(good) if len(good) < len(items) else items
    sizes = {name: entry.size for name, entry in zip(good_items.names, good_entries)}
    if mode == "none":
        return Content(good_items, [], skipped, {"mode": "none"}, summary, sizes)
    started = time.perf_counter()
    groups = dedup.find_groups(good_entries, splitter.near_distance if mode == "near" else None, [item.name for item in good_items])
    given = None
    if getattr(splitter, "predefined", False):
        def given(item):
            return splitter.split_of(item, listing.fields)
    resolved = dedup.resolve(
        good_items, groups, mode=mode, keep=splitter.dedup_keep, on_error=on_error, given_split=given, class_names=listing.class_names
    )
    grouped = sum(len(g.members) for g in groups)
    log.info("dedup (%s): %d group(s) of %d images in %.2f s", mode, len(groups), grouped, time.perf_counter() - started)
    if mode == "near" and grouped > 0.2 * len(good_items) and len(good_items) >= 50:
        log.warning(
            "split.dedup=near put %d of %d images (%.0f%%) in duplicate groups: for these images split.near_distance=%d may be too "
            "large (or the images too small or too alike for a 64-bit hash); check summary.json duplicates",
            grouped, len(good_items), 100 * grouped / len(good_items), splitter.near_distance,
        )
    return Content(resolved.items, resolved.units, skipped + resolved.skipped, resolved.report, summary, sizes)


def _split_info(splitter, splits: dict, content: Content | None) -> dict:
    """summary.json's (and plan.json's) record of how the split was made."""
    info: dict = {"split_balance": getattr(splitter, "balance", {})}
    groups = getattr(splitter, "groups_info", None)
    if groups:
        info["groups"] = groups
    if content is not None:
        info["scan"] = content.scan
        duplicates = content.duplicates
        if duplicates.get("groups"):
            where = {item.name: split for split, members in splits.items() for item in members}
            for group in duplicates["groups"]:
                group["splits"] = [where.get(name) for name in group["names"]]
        info["duplicates"] = duplicates
    return info


def _run(*, name, source, listing, splits, plans, metadata_paths, recorded, resuming, skipped, splitter, encoder, writer, executor, output_dir,
         on_error, max_skipped, limit_skipped, verify, run_info, progress, started, run_plan) -> dict:
    manifest = outputs.Manifest(output_dir, run_info.get("config_fingerprint", ""))
    results: list[ShardResult] = []
    todo: list[ShardPlan] = []
    for plan in plans:
        entry = recorded.get(plan.path)
        stamps = outputs.stamp_digest(stamp(source, item.ref) for item in plan.items) if entry else None
        kept = outputs.reusable(output_dir, plan, entry, listing.class_names, stamps)
        if kept is not None:
            results.append(kept)
        else:
            todo.append(plan)
    if recorded or (resuming and manifest.header()):
        # Also when no shard was recorded: an overwrite interrupted while deleting left its list of files
        # still to delete in the manifest, and they go now.
        outputs.settle_resume(output_dir, manifest, recorded, {r.path for r in results}, plans)
        log.info("resume: %d of %d shards are finished and unchanged, writing %d", len(results), len(plans), len(todo))
    manifest.start([p.path for p in plans], owned=metadata_paths)
    runplan.write(output_dir, run_plan)
    log.info("%d images -> %d shards in %s", sum(len(p.items) for p in plans), len(plans), output_dir)

    so_far = skipped + [s for r in results for s in r.skipped]  # grows with each shard: checked once per shard
    _check_skips(so_far, limit_skipped, max_skipped)
    threads = getattr(executor, "workers", 1) if getattr(encoder, "cpu_bound", False) else 1
    job = Job(source, encoder, writer, output_dir, listing.class_names, on_error, threads)
    by_path = {plan.path: plan for plan in todo}
    bar = _progress(sum(len(p.items) for p in todo), progress)
    bar_lock = threading.Lock()
    finished_images = finished_bytes = 0
    writing = time.perf_counter()

    def advance(processed: int, nbytes: int) -> None:
        with bar_lock:  # the executor's watcher thread and this loop both move the bar, never backwards
            seconds = time.perf_counter() - writing
            if seconds > 0 and nbytes:
                bar.set_postfix_str(f"{nbytes / seconds / 1e6:,.0f} MB/s", refresh=False)
            bar.update(max(0, processed - bar.n))

    memory.trim()  # what planning freed goes back to the system before the shards are written
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
            _check_skips(so_far, limit_skipped, max_skipped)
    except BaseException:
        with interrupts.held():
            running.close()  # stop the workers first, then remove what they left half-written
            outputs.clean_unfinished(output_dir, todo)
        raise
    finally:
        bar.close()
        said.end()

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
        skipped=skipped,
        run_info={**run_info, "split_notes": list(getattr(splitter, "notes", [])), "encoder": encoder.describe()},
    )
    summary["metadata_files"] = _write_metadata(output_dir, writer, summary, listing, metadata_paths)
    if verify:
        from prep.verify import verify_run

        from prep.encoders import DEFAULT_MAX_PIXELS

        # the run's own decompression-bomb limit, so a run allowed larger images also verifies them
        max_pixels = getattr(encoder, "max_pixels", DEFAULT_MAX_PIXELS)
        failures = [line for ok, line in verify_run(output_dir, summary, decode=True, max_pixels=max_pixels) if not ok]
        if failures:
            raise WriteError(f"verify=true: {len(failures)} check(s) failed, no summary.json written: {failures[0]}")
        log.info("verify: every shard re-read and checked")
    interrupts.check()  # the last point to stop: summary.json makes the run finished
    manifest.start([plan.path for plan in plans], owned=[*metadata_paths, outputs.REPORT, outputs.LABELS_CSV, outputs.SUMMARY])  # about to be written
    _write_report(output_dir, summary, source, encoder)
    summaries.write_labels_csv(output_dir, summary, listing.class_names)
    summaries.write(output_dir, summary)
    manifest.remove()
    total_bytes = sum(shard["bytes"] for shard in summary["shards"])
    log.info(
        "wrote %d records (%d skipped) in %d shards, %s, to %s in %.2f s (%.0f records/s, %.1f MB/s)",
        summary["num_records"], len(summary["skipped"]), len(summary["shards"]), _size(total_bytes), output_dir, seconds,
        summary["records_per_second"], total_bytes / seconds / 1e6 if seconds > 0 else 0.0,
    )
    return summary


def _write_report(output_dir: str, summary: dict, source, encoder) -> None:
    """report.html, before summary.json; a report that cannot be made is a warning, never a failed run."""
    from prep import report
    from prep.encoders import DEFAULT_MAX_PIXELS

    report.write_for_run(output_dir, summary, source, getattr(encoder, "max_pixels", DEFAULT_MAX_PIXELS))


def _write_metadata(output_dir: str, writer, summary: dict, listing, planned: list[str]) -> list[dict]:
    """The format's run-level files (planned, and recorded in the manifest, before the first shard), as
    summary.json lists them: path, bytes, sha256."""
    files = writer.metadata_files(summary, listing)
    if sorted(files) != sorted(planned):
        raise WriteError(f"{writer.format} writer: wrote {sorted(files)}, planned {sorted(planned)} (a bug in prep)")
    listed = []
    for path in sorted(files):
        data = files[path]
        try:
            storage.write_bytes(storage.join(output_dir, path), data)
        except OSError as err:
            raise WriteError(f"{storage.join(output_dir, path)}: cannot write: {err.strerror or err}") from None
        listed.append({"path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return listed


def check_name(name: str) -> None:
    """The dataset name goes into folder and shard names: a plain name, never a path."""
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\0") or not name.isprintable():
        raise ConfigError(f"name={name!r}: the dataset name must be a plain word, e.g. name=my_photos")


def input_paths(source, labels) -> list[str]:
    """Every file or folder the run reads, so output_dir can be checked against them."""
    return [p for p in (getattr(source, "image_dir", None), getattr(source, "path", None), getattr(labels, "path", None)) if p]


class SkipLog:
    """Skipped images as the log says them: each of the first SHOWN of a stage (planning, the scan, writing) on
    its own line, the rest counted by kind and said in one line at the stage's end. A label file naming 900,000
    absent images is then a few lines, not 900,000; summary.json lists every one."""

    SHOWN = 20

    def __init__(self) -> None:
        self.shown = 0
        self.more: Counter[str] = Counter()

    def add(self, skip: Skip) -> None:
        if self.shown < self.SHOWN:
            self.shown += 1
            if skip.where:
                log.warning("skipped %s (%s): %s", skip.source, skip.where, skip.reason)
            else:
                log.warning("skipped %s: %s", skip.source, skip.reason)
        else:
            self.more[skip.reason.split(":")[0]] += 1  # the kind: a reason's details may name the file

    def end(self) -> None:
        if self.more:
            total = sum(self.more.values())
            kinds = "; ".join(f"{count:,} {kind}" for kind, count in self.more.most_common(3))
            rest = f"; {len(self.more) - 3} more kind(s)" if len(self.more) > 3 else ""
            log.warning("skipped %s more images (%s%s): summary.json lists every one", f"{total:,}", kinds, rest)
            self.more.clear()


def _check_skips(skipped: list[Skip], limit: int | None, max_skipped) -> None:
    if limit is not None and len(skipped) > limit:
        first = skipped[0]
        raise InputError(
            f"{len(skipped)} images skipped, more than max_skipped={max_skipped} allows ({limit}); "
            f"the first: {first.source}: {first.reason}"
        )


class _NoBar:
    """What the pipeline calls on a progress bar, doing nothing (progress=false, or no terminal)."""

    n = 0

    def update(self, n: int) -> None:
        self.n += n

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, desc: str = "converting"):
    """A progress bar on a terminal (none in a log file or with progress=false): images done of all, images/s,
    MB/s (when writing) and the time left."""
    import sys

    if not enabled or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="img", unit_scale=True, desc=desc, leave=False, smoothing=0.1)


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes} bytes"

