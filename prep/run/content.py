"""The content scan step: read every listed image once before splitting, so that bad files are known and
duplicates (byte-identical, or near with split.dedup=near) share a split. Runs where the splitter asks
for it (Splitter.scans); a dry run scans too, so its plan is the real run's."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from prep.core.errors import EncodeError
from prep.core.values import Skip
from prep.run import dedup, outputs, scan
from prep.run.context import Settings, Stages
from prep.run.listing import Listing
from prep.run.progress import bar
from prep.run.skips import SkipLog

log = logging.getLogger(__name__)


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


def scan_content(listing: Listing, stages: Stages, run: Settings) -> Content:
    # A refused output folder is said before the scan reads every image, not after.
    outputs.prepare(run.output_dir, overwrite=run.overwrite, resume=run.resume, fingerprint=run.fingerprint, check_only=True)
    splitter, on_error = stages.splitter, run.on_error
    mode = splitter.dedup
    items = listing.items
    shown = bar(len(items), run.progress, "scanning")
    try:
        report = scan.scan(
            items, stages.source, stages.executor, hashing=mode != "none", perceptual=mode == "near",
            max_pixels=stages.encoder.max_pixels, progress=lambda n, _: shown.update(max(0, n - shown.n)),
        )
    finally:
        shown.close()
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
    if splitter.predefined:
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


def split_info(splitter, splits: dict, content: Content | None) -> dict:
    """summary.json's (and plan.json's) record of how the split was made."""
    info: dict = {"split_balance": splitter.balance}
    if splitter.groups_info:
        info["groups"] = splitter.groups_info
    if content is not None:
        info["scan"] = content.scan
        duplicates = content.duplicates
        if duplicates.get("groups"):
            where = {item.name: split for split, members in splits.items() for item in members}
            for group in duplicates["groups"]:
                group["splits"] = [where.get(name) for name in group["names"]]
        info["duplicates"] = duplicates
    return info
