"""`prep-report RUN_DIR` (or `python -m prep.report`): rebuild report.html, the page that shows what a run wrote.

Every run writes report.html beside summary.json (just before it): the run's headline, class counts per split,
the class mix of every shard, image sizes and formats, the skipped images and duplicate groups with thumbnails,
split balance, warnings and a sample of images per split. The page is one self-contained file: plain HTML,
inline CSS and SVG, every image a small JPEG thumbnail in a data: URI, no script and no link to anything outside
it, so it opens offline and travels with the run. It reads summary.json, a few records per split and the skipped
and duplicate images, never every record: seconds for any run. Long lists are cut ("and N more"). The same run
gives the same bytes.

A run folder may come from someone else, so the rebuilt page never embeds a file the run folder names: the
thumbnails of skipped and duplicate images come only from a folder the user names (--images DIR, read only
inside it), else they are placeholders; every file of the run folder is read without following a link, and
the page is written under the run's lock (.prep-lock), never while a prep run holds it.
"""

from __future__ import annotations

import argparse
import base64
import errno
import html
import itertools
import json
import logging
import math
import os
import re
import signal
import sys
from collections import Counter
from contextlib import contextmanager

from prep import encoders
from prep.core import storage
from prep.core.errors import EncodeError, PrepError
from prep.tools.verify import positive_int
from prep.load import load_summary, open_fd_in_run, read_in_run, read_problem
from prep.runfiles.names import HYDRA, LOCK, REPORT, SUMMARY

log = logging.getLogger(__name__)

THUMB = 96  # thumbnails fit a THUMB x THUMB box
THUMB_QUALITY = 80
SAMPLES_PER_SPLIT = 16
SAMPLE_SHARDS = 4  # the samples of a split come from at most this many shards, spread over the split
MAX_CLASS_ROWS = 30  # classes drawn per split chart (the largest); the rest are counted
MAX_SHARD_COLUMNS = 400
MAX_SKIPPED_ROWS = 40
MAX_GROUPS = 20
MAX_GROUP_IMAGES = 6
MAX_BALANCE_ROWS = 30
MAX_NOTES = 50
MAX_EXAMPLES = 10
MIX_COLOURS = 10  # the largest classes get a colour of their own in the shard chart; the others are grey
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
OTHER = "#d9d9d9"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:26px;margin:12px 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px 3px 0;text-align:left;vertical-align:top}
th{font-weight:600;color:#555}td.r,th.r{text-align:right}
.lead{font-size:16px;color:#444;margin:0 0 8px}.muted{color:#777}.warn{color:#a33}
code{background:#eee;padding:1px 4px;border-radius:3px;font-size:13px}
.grid{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;width:104px;text-align:center;font-size:11px;overflow:hidden}
figure .box{width:96px;height:96px;display:flex;align-items:center;justify-content:center;background:#eee;margin:0 auto}
figure img.px{image-rendering:pixelated}
figcaption{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.ph{width:96px;height:96px;display:flex;align-items:center;justify-content:center;background:#e4e4e4;color:#888;font-size:11px}
.group{border:1px solid #ddd;border-radius:4px;padding:6px 8px;margin:8px 0;background:#fff}
.group.conflict{border-color:#d88}
.badge{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;background:#eee;margin-left:6px}
.badge.bad{background:#f4c7c7}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
svg text{font-size:12px;fill:#333}
"""


# ------------------------------------------------------------------------------------------------ images


def _cv2():
    import cv2

    return cv2


def thumbnail(payload, max_pixels: int = encoders.DEFAULT_MAX_PIXELS):
    """Pixels (OpenCV order) of an image scaled down to fit THUMB x THUMB: file bytes or a pixel array.

    The header's size is checked against max_pixels before any decoder sees the bytes, and a large JPEG is
    decoded at 1/2, 1/4 or 1/8 of its size (OpenCV's reduced decoding), so a thumbnail costs little.
    EncodeError when the image is over max_pixels, truncated or does not decode.
    """
    cv2 = _cv2()
    import numpy as np

    from prep.formats.images import check_complete, read_header

    if isinstance(payload, (bytes, bytearray, memoryview)):
        data = bytes(payload)
        info = read_header(data)
        if info.width * info.height > max_pixels:
            raise EncodeError(f"{info.width}x{info.height} is over max_pixels={max_pixels}")
        check_complete(data, info.format)
        reduce = 1
        while reduce < 8 and max(info.width, info.height) // (reduce * 2) >= THUMB:
            reduce *= 2
        flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[reduce]
        try:
            pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        except cv2.error:
            pixels = None
        if pixels is None:
            raise EncodeError(f"cannot decode the image data ({info.format})")
    else:
        pixels = encoders.decode(payload, 3, max_pixels)
    return _fit(pixels)


def _fit(pixels):
    height, width = pixels.shape[:2]
    scale = THUMB / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = _cv2().resize(pixels, size, interpolation=_cv2().INTER_AREA)
    return pixels


def data_uri(pixels) -> str:
    """A JPEG data: URI of thumbnail pixels (same pixels, same bytes); its size is on the page's <img>."""
    cv2 = _cv2()
    ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY, cv2.IMWRITE_JPEG_OPTIMIZE, 0])
    if not ok:
        raise EncodeError("cannot encode the thumbnail")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


_FAILURES = (PrepError, OSError, ValueError, MemoryError)  # what a thumbnail may fail with; it becomes a placeholder


class Thumbnails:
    """Thumbnails of source images by name (skipped images, duplicates) and of records (the sample grid).

    Source images are found with the source's own resolve() and read with its read(), which never opens a
    file outside source.image_dir; a source without resolve() (digits, a pixel CSV) shows placeholders.
    """

    def __init__(self, source=None, max_pixels: int = encoders.DEFAULT_MAX_PIXELS) -> None:
        self.source = source
        self.max_pixels = max_pixels
        self._cache: dict[str, tuple[str | None, str]] = {}
        self.sizes: dict[str, tuple[int, int]] = {}  # data: URI -> (width, height) of its pixels

    def _uri(self, pixels) -> str:
        uri = data_uri(pixels)
        self.sizes[uri] = (pixels.shape[1], pixels.shape[0])
        return uri

    def of_name(self, name: str) -> tuple[str | None, str]:
        """(data: URI or None, why there is none)."""
        if name not in self._cache:
            self._cache[name] = self._of_name(name)
        return self._cache[name]

    def _of_name(self, name: str) -> tuple[str | None, str]:
        if self.source is None or not self.source.lists_files:
            return None, "no preview"
        try:
            payload = self.source.read(self.source.resolve(name))
        except _FAILURES:  # missing, outside source.image_dir, not a regular file, too large
            return None, "cannot be read"
        try:
            return self._uri(thumbnail(payload, self.max_pixels)), ""
        except _FAILURES as err:
            return None, _short_reason(err)
        except Exception as err:  # noqa: BLE001 - cv2.error and the like: the page shows a placeholder, the run goes on
            return None, type(err).__name__

    def of_record(self, record: dict, view) -> tuple[str | None, str]:
        from prep.formats.images import sniff_format

        data = record.get(view.key.get("encoded", ""))
        try:
            if isinstance(data, bytes) and not view.raw and sniff_format(data[:16]):
                pixels = thumbnail(data, self.max_pixels)
            else:
                pixels = view.image(record, self.max_pixels)
                if pixels is None:
                    return None, "no image"
                pixels = _fit(pixels)
            return self._uri(pixels), ""
        except _FAILURES as err:
            return None, _short_reason(err)
        except Exception as err:  # noqa: BLE001 - as above
            return None, type(err).__name__


def _short_reason(err: Exception) -> str:
    return "over max_pixels" if "max_pixels" in str(err) else "does not decode"


def sample_records(run_dir: str, summary: dict, split: str, count: int = SAMPLES_PER_SPLIT) -> tuple[list[dict], str]:
    """A few records of one split: the first ones of at most SAMPLE_SHARDS shards spread over the split."""
    from prep.load import shard_records

    shards = [s for s in summary["shards"] if s["split"] == split and s["num_records"]]
    if not shards:
        return [], ""
    picks = min(len(shards), SAMPLE_SHARDS)
    chosen = [shards[round(i * (len(shards) - 1) / (picks - 1))] if picks > 1 else shards[0] for i in range(picks)]
    per_shard = math.ceil(count / picks)
    found: list[dict] = []
    for shard in chosen:
        path = storage.join(run_dir, shard["path"])
        try:  # the run folder's own file, never read through a link
            found += itertools.islice(shard_records(path, summary["format"], summary.get("compression"), run_dir=run_dir), per_shard)
        except (PrepError, OSError) as err:
            return found[:count], f"{shard['path']}: {err}"
    return found[:count], ""


# ------------------------------------------------------------------------------------------------ the page


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return str(value)


def num(value, key: list, tag: str = "span", of: str = "") -> str:
    """A number from summary.json, tagged with where it comes from (data-key: its path in summary.json, as a
    JSON list) so a reader or a test can check the page against the file. of="count": the length of that list."""
    attrs = f' class="n" data-key="{_esc(json.dumps(key))}" data-value="{_esc(json.dumps(value))}"'
    if of:
        attrs += f' data-of="{of}"'
    return f"<{tag}{attrs}>{_esc(_fmt(value))}</{tag}>"


def _pct(value, key: list, tag: str = "span") -> str:
    try:
        text = f"{100 * float(value):.1f}%" if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"
    except OverflowError:  # an int beyond any float: no fraction a run writes
        text = "?"
    return f'<{tag} class="p" data-key="{_esc(json.dumps(key))}" data-value="{_esc(json.dumps(value))}">{_esc(text)}</{tag}>'


def _short(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "\u2026"


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _count(value, most: int | None = None) -> bool:
    """A whole number >= 0 (at most `most`), as a run writes counts."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0 and (most is None or value <= most)


_CLASS_KEY = re.compile(r"0|-?[1-9][0-9]{0,18}")  # a class id as summary.json's keys hold it (int64 in decimal)


def _class_key(key) -> bool:
    return isinstance(key, str) and bool(_CLASS_KEY.fullmatch(key)) and -(2**63) <= int(key) < 2**63


def drawable(summary: dict) -> dict:
    """summary with what the page draws but summary.json's validation does not check left out where it is not
    what a run writes: a shard's class_counts (class ids to counts of at most the shard's records) and
    image_sizes (increasing bin edges, a count per bin). The page then says they are not recorded; nothing
    else changes, so every number on it still names its place in summary.json. A run's own summary is
    returned as it is."""
    shards = summary.get("shards")
    if isinstance(shards, list):
        kept = []
        for shard in shards:
            counts = shard.get("class_counts") if isinstance(shard, dict) else None
            if counts is not None and not (
                isinstance(counts, dict) and all(_class_key(k) and _count(v, _int(shard.get("num_records"))) for k, v in counts.items())
            ):
                shard = {k: v for k, v in shard.items() if k != "class_counts"}
            kept.append(shard)
        summary = {**summary, "shards": kept}
    sizes = summary.get("image_sizes")
    if sizes is not None:
        bins = sizes.get("bins") if isinstance(sizes, dict) else None
        good = (
            isinstance(bins, list) and bins and all(_count(b) for b in bins) and all(a < b for a, b in zip(bins, bins[1:]))
            and all(isinstance(sizes.get(k), list) and len(sizes[k]) == len(bins) and all(_count(c) for c in sizes[k])
                    for k in ("height", "width") if k in sizes)
        )
        if not good:
            summary = {k: v for k, v in summary.items() if k != "image_sizes"}
    return summary


class Page:
    """The report of one run: sections of HTML built from its summary, with thumbnails from `thumbs`."""

    def __init__(self, summary: dict, run_dir: str, thumbs: Thumbnails, skipped_count: int = 0) -> None:
        self.s = summary
        self.skipped_count = skipped_count  # summary["skipped"] may hold only the rows shown
        self.run_dir = run_dir
        self.thumbs = thumbs
        label_map = summary.get("label_map") if isinstance(summary.get("label_map"), dict) else {}
        self.names = {label: name for name, label in label_map.items()}
        totals: Counter = Counter()
        for split in summary["splits"].values():
            totals.update({int(k): v for k, v in split["classes"].items()})
        self.totals = totals
        known = ("train", "validation", "test")
        self.split_order = sorted(summary["splits"], key=lambda name: (known.index(name) if name in known else len(known), name))
        self.colour = {label: PALETTE[i] for i, (label, _) in enumerate(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:MIX_COLOURS])}

    def name(self, label) -> str:
        try:
            label = int(label)
        except (TypeError, ValueError, OverflowError):  # not a class id (a list, a text, an infinite float)
            return str(label)
        name = self.names.get(label)
        return f"{name}" if name is not None else str(label)

    def html(self) -> str:
        s = self.s
        sections = [
            self.headline(), self.splits(), self.shards(), self.sizes(), self.skipped(), self.duplicates(),
            self.balance(), self.notes(), self.samples(),
        ]
        title = f"{s['dataset']}: prep report"
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(part for part in sections if part)
            + f'\n<p class="muted">Made by prep {_esc(s.get("version", "?"))} from summary.json. '
            "Rebuild it with <code>prep-report RUN_DIR</code>.</p>\n</main>\n</body>\n</html>\n"
        )

    # -------------------------------------------------------------------------------- sections

    def headline(self) -> str:
        s = self.s
        rows = [
            ("format", _esc(s["format"]) + (f" ({_esc(s['compression'])})" if s.get("compression") else "")),
            ("records", num(s["num_records"], ["num_records"])),
            ("shards", num(len(s["shards"]), ["shards"], of="count")),
        ]
        if isinstance(s.get("seconds"), (int, float)):
            rows.append(("seconds", num(s["seconds"], ["seconds"])))
        if isinstance(s.get("records_per_second"), (int, float)):
            rows.append(("records per second", num(s["records_per_second"], ["records_per_second"])))
        if isinstance(s.get("encoder"), dict):
            rows.append(("encoder", " ".join(f"<code>{_esc(k)}={_esc(json.dumps(v))}</code>" for k, v in s["encoder"].items())))
        if s.get("pattern"):
            rows.append(("shard names", f"<code>{_esc(s['pattern'])}</code>"))
        overrides = s.get("overrides")
        if isinstance(overrides, list):
            rows.append(("config overrides", " ".join(f"<code>{_esc(o)}</code>" for o in overrides) or '<span class="muted">none (the defaults)</span>'))
        if isinstance(s.get("scan"), dict):
            scan = s["scan"]
            parts = [f"{num(scan[k], ['scan', k])} {label}" for k, label in (("images", "images"), ("bytes", "bytes"), ("seconds", "s")) if isinstance(scan.get(k), (int, float))]
            rows.append(("content scan", ", ".join(parts)))
        if isinstance(s.get("exif"), dict):
            exif = s["exif"]
            parts = [f"mode <code>{_esc(exif.get('mode', '?'))}</code>"]
            parts += [f"{num(exif[k], ['exif', k])} {k}" for k in ("oriented", "applied") if isinstance(exif.get(k), int)]
            rows.append(("EXIF orientation", ", ".join(parts)))
        if s.get("version"):
            rows.append(("prep version", _esc(s["version"])))
        table = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
        lead = (
            f'<p class="lead">{num(s["num_records"], ["num_records"])} records in {num(len(s["shards"]), ["shards"], of="count")} '
            f"{_esc(s['format'])} shards, {len(self.totals)} classes, splits {', '.join(_esc(k) for k in self.split_order)}</p>"
        )
        return f"<h1>{_esc(s['dataset'])}</h1>\n{lead}\n<table>{table}</table>"

    def splits(self) -> str:
        s = self.s
        rows = "".join(
            f"<tr><td>{_esc(name)}</td><td class=r>{num(split['num_records'], ['splits', name, 'num_records'])}</td>"
            f"<td class=r>{num(split['num_shards'], ['splits', name, 'num_shards'])}</td>"
            f"<td class=r>{len([c for c in split['classes'].values() if c])}</td></tr>"
            for name, split in ((n, s["splits"][n]) for n in self.split_order)
        )
        out = [f"<h2>Splits and classes</h2>\n<table><tr><th>split</th><th class=r>records</th><th class=r>shards</th><th class=r>classes</th></tr>{rows}</table>"]
        for name in self.split_order:
            split = s["splits"][name]
            out.append(f"<h3>{_esc(name)}</h3>\n" + self.class_chart(name, split))
        return "\n".join(out)

    def class_chart(self, split_name: str, split: dict) -> str:
        counts = [(int(k), v) for k, v in split["classes"].items()]
        if not counts:
            return '<p class="muted">no records</p>'
        if len(counts) <= MAX_CLASS_ROWS:
            rows = sorted(counts)
        else:
            rows = sorted(counts, key=lambda kv: (-kv[1], kv[0]))[:MAX_CLASS_ROWS]
        peak = max(v for _, v in counts) or 1
        label_w, bar_w, row_h = 230, 560, 18
        parts = []
        for i, (label, count) in enumerate(rows):
            y = i * row_h
            width = round(bar_w * count / peak, 1)
            name = self.name(label)
            parts.append(
                f'<g><title>{_esc(name)} (id {label}): {count:,}</title>'
                f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_esc(_short(name, 32))}</text>'
                f'<rect x="{label_w}" y="{y + 3}" width="{width}" height="{row_h - 5}" fill="{self.colour.get(label, PALETTE[0])}"/>'
                f'<text x="{label_w + width + 4}" y="{y + 13}">{num(count, ["splits", split_name, "classes", str(label)], tag="tspan")}</text></g>'
            )
        height = len(rows) * row_h + 4
        svg = f'<svg width="{label_w + bar_w + 70}" height="{height}" role="img" aria-label="class counts of {_esc(split_name)}">{"".join(parts)}</svg>'
        notes = []
        if len(counts) > len(rows):
            rest = sorted(counts, key=lambda kv: (kv[1], kv[0]))[: len(counts) - len(rows)]
            smallest = ", ".join(f"{_esc(self.name(k))} ({v:,})" for k, v in rest[:5])
            notes.append(f"and {len(rest):,} more classes holding {sum(v for _, v in rest):,} records; the smallest: {smallest}")
        missing = sorted(set(self.names) - {k for k, v in counts if v})
        if missing:
            shown = ", ".join(_esc(self.name(k)) for k in missing[:MAX_EXAMPLES])
            more = f" and {len(missing) - MAX_EXAMPLES:,} more" if len(missing) > MAX_EXAMPLES else ""
            notes.append(f'<span class="warn">{len(missing):,} classes have no record here: {shown}{more}</span>')
        return svg + "".join(f'<p class="muted">{n}</p>' for n in notes)

    def shards(self) -> str:
        shards = self.s["shards"]
        if not shards:
            return "<h2>Shards</h2>\n<p class=\"muted\">no shards</p>"
        shown = shards[:MAX_SHARD_COLUMNS]
        column = max(2, min(28, 1000 // len(shown)))
        gap = 1 if column < 6 else 3
        chart_h = 160
        peak = max(s["num_records"] for s in shown) or 1
        parts, x, split = [], 0, None
        labels = []
        label_end = 0  # where the last split's name ends: the next split starts after it, names never overlap
        for i, shard in enumerate(shown):
            if shard["split"] != split:
                if split is not None:
                    x = max(x + 12, label_end + 8)
                split = shard["split"]
                labels.append(f'<text x="{x}" y="{chart_h + 34}">{_esc(split)}</text>')
                label_end = x + 7 * len(split)
            counts = shard.get("class_counts") if isinstance(shard.get("class_counts"), dict) else None
            total = shard["num_records"]
            height = chart_h * total / peak
            segments, y = [], chart_h
            if counts:
                other = 0
                for label, count in sorted(((int(k), v) for k, v in counts.items()), key=lambda kv: kv[0]):
                    if label in self.colour:
                        h = chart_h * count / peak
                        y -= h
                        segments.append(f'<rect x="{x}" y="{y:.1f}" width="{column}" height="{h:.1f}" fill="{self.colour[label]}"/>')
                    else:
                        other += count
                if other:
                    h = chart_h * other / peak
                    y -= h
                    segments.append(f'<rect x="{x}" y="{y:.1f}" width="{column}" height="{h:.1f}" fill="{OTHER}"/>')
                mix = ", ".join(f"{self.name(k)}: {v:,}" for k, v in sorted(((int(k), v) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))[:8])
                more = f", and {len(counts) - 8} more classes" if len(counts) > 8 else ""
            else:
                segments.append(f'<rect x="{x}" y="{chart_h - height:.1f}" width="{column}" height="{height:.1f}" fill="{OTHER}"/>')
                mix, more = "class counts not recorded (an older run)", ""
            parts.append(
                f'<g class="n" data-key="{_esc(json.dumps(["shards", i, "num_records"]))}" data-value="{total}">'
                f"<title>{_esc(shard['path'])}: {total:,} records; {_esc(mix)}{_esc(more)}</title>{''.join(segments)}</g>"
            )
            if column >= 20:
                parts.append(f'<text x="{x + column / 2}" y="{chart_h + 14}" text-anchor="middle" font-size="10">{total:,}</text>')
            x += column + gap
        width = max(x, label_end) + 20
        svg = f'<svg width="{width}" height="{chart_h + 40}" role="img" aria-label="class mix per shard">{"".join(parts)}{"".join(labels)}</svg>'
        legend = "".join(f'<span><i style="background:{c}"></i>{_esc(_short(self.name(k), 24))}</span>' for k, c in self.colour.items())
        if len(self.totals) > len(self.colour):
            legend += f'<span><i style="background:{OTHER}"></i>{len(self.totals) - len(self.colour):,} other classes</span>'
        sizes = [s["num_records"] for s in shards]
        out = [
            "<h2>Shards: the class mix of each</h2>",
            f'<p>{num(len(shards), ["shards"], of="count")} shards of {min(sizes):,} to {max(sizes):,} records, '
            f"{sum(_int(s.get('bytes')) for s in shards):,} bytes in all. One bar per shard, its height the shard's records, "
            "coloured by class (hover a bar for its name and counts).</p>",
            svg,
            f'<p class="legend">{legend}</p>',
        ]
        if len(shards) > len(shown):
            out.append(f'<p class="muted">and {len(shards) - len(shown):,} more shards (not drawn)</p>')
        return "\n".join(out)

    def sizes(self) -> str:
        s = self.s
        out = ["<h2>Image sizes and formats</h2>"]
        shapes = s.get("image_shapes")
        if isinstance(shapes, dict) and shapes:
            parts = []
            for key in ("height", "width"):
                if isinstance(shapes.get(key), list) and len(shapes[key]) == 2:
                    parts.append(f"{key} {num(shapes[key][0], ['image_shapes', key, 0])} to {num(shapes[key][1], ['image_shapes', key, 1])} px")
            if isinstance(shapes.get("channels"), list):
                parts.append("channels " + ", ".join(num(c, ["image_shapes", "channels", i]) for i, c in enumerate(shapes["channels"])))
            out.append(f"<p>Stored images: {'; '.join(parts)}.</p>")
        sizes = s.get("image_sizes")
        if isinstance(sizes, dict) and isinstance(sizes.get("bins"), list):
            for key in ("height", "width"):
                if isinstance(sizes.get(key), list):
                    out.append(f"<h3>{key}</h3>\n" + self.histogram(sizes["bins"], sizes[key], key))
        formats = s.get("image_formats")
        if isinstance(formats, dict) and formats:
            total = sum(_int(v) for v in formats.values()) or 1
            rows = "".join(
                f"<tr><td>{_esc(name)}</td><td class=r>{num(count, ['image_formats', name])}</td><td class=r>{100 * _int(count) / total:.1f}%</td></tr>"
                for name, count in formats.items()
            )
            out.append(f"<h3>formats</h3>\n<table><tr><th>stored as</th><th class=r>records</th><th class=r>share</th></tr>{rows}</table>")
        return "\n".join(out)

    def histogram(self, bins: list, counts: list, key: str) -> str:
        used = [i for i, c in enumerate(counts) if c]
        if not used:
            return '<p class="muted">no images</p>'
        lo, hi = used[0], used[-1]
        peak = max(counts) or 1
        bar, gap, chart_h = 44, 6, 110
        parts = []
        for n, i in enumerate(range(lo, hi + 1)):
            x = n * (bar + gap)
            h = chart_h * counts[i] / peak
            low = bins[i]
            label = f"{low}+" if i + 1 >= len(bins) else f"{low}\u2013{bins[i + 1] - 1}"
            parts.append(
                f'<rect x="{x}" y="{16 + chart_h - h:.1f}" width="{bar}" height="{h:.1f}" fill="{PALETTE[0]}"/>'
                f'<text x="{x + bar / 2}" y="{12 + chart_h - h:.1f}" text-anchor="middle">{num(counts[i], ["image_sizes", key, i], tag="tspan")}</text>'
                f'<text x="{x + bar / 2}" y="{chart_h + 32}" text-anchor="middle">{_esc(label)}</text>'
            )
        width = (hi - lo + 1) * (bar + gap)
        return f'<svg width="{width}" height="{chart_h + 40}" role="img" aria-label="image {key} in pixels">{"".join(parts)}</svg>'

    def figure(self, uri: str | None, why: str, caption: str, title: str) -> str:
        if uri:
            image = f'<img src="{uri}" alt="{_esc(title)}"{self._size_attrs(uri)}>'
        else:
            image = f'<div class="ph">{_esc(why or "no preview")}</div>'
        return f'<figure title="{_esc(title)}"><div class="box">{image}</div><figcaption>{_esc(caption)}</figcaption></figure>'

    def _size_attrs(self, uri: str) -> str:
        """Small images (8x8 digits) are drawn larger, pixel by pixel; others at their thumbnail size."""
        if uri not in self.thumbs.sizes:
            return ""
        width, height = self.thumbs.sizes[uri]
        if max(height, width) >= THUMB // 2:
            return f' width="{width}" height="{height}"'
        scale = THUMB // max(height, width)
        return f' class="px" width="{width * scale}" height="{height * scale}"'

    def skipped(self) -> str:
        s = self.s
        skipped = s.get("skipped") if isinstance(s.get("skipped"), list) else []
        count = max(self.skipped_count, len(skipped))
        out = [f"<h2>Skipped images: {num(count, ['skipped'], of='count')}</h2>"]
        if skipped:
            rows = []
            for i, skip in enumerate(skipped[:MAX_SKIPPED_ROWS]):
                if not isinstance(skip, dict):
                    continue
                source = str(skip.get("source", ""))
                uri, why = self.thumbs.of_name(source)
                rows.append(
                    f"<tr><td>{self.figure(uri, why, '', source)}</td><td><code>{_esc(source)}</code></td>"
                    f"<td>{_esc(skip.get('reason', ''))}</td><td class=muted>{_esc(skip.get('where', ''))}</td></tr>"
                )
            out.append(f"<table><tr><th>image</th><th>name</th><th>reason</th><th>where</th></tr>{''.join(rows)}</table>")
            if count > MAX_SKIPPED_ROWS:
                out.append(f'<p class="muted">and {count - MAX_SKIPPED_ROWS:,} more (all are listed in summary.json)</p>')
        else:
            out.append("<p>None: every image was written.</p>")
        for key, what in (("unlabelled", "images in the folder that no label names (left out)"), ("ignored", "files not converted (hidden, not an image, unusable)")):
            entry = s.get(key)
            if isinstance(entry, dict) and _int(entry.get("count")):
                examples = entry.get("examples") if isinstance(entry.get("examples"), list) else []
                examples = [e for e in examples if isinstance(e, str)][:MAX_EXAMPLES]
                shown = ", ".join(f"<code>{_esc(e)}</code>" for e in examples)
                out.append(f"<p>{num(entry['count'], [key, 'count'])} {what}, e.g. {shown}</p>")
        return "\n".join(out)

    def duplicates(self) -> str:
        dup = self.s.get("duplicates")
        out = ["<h2>Duplicates</h2>"]
        if not isinstance(dup, dict) or dup.get("mode", "none") == "none":
            out.append('<p class="muted">No duplicate scan ran for this run (<code>split.dedup=none</code>, or a run made before the scan).</p>')
            return "\n".join(out)
        groups = dup.get("groups") if isinstance(dup.get("groups"), list) else []
        facts = [f"mode <code>{_esc(dup.get('mode'))}</code>", f"keep <code>{_esc(dup.get('keep', 'all'))}</code>",
                 f"{num(len(groups), ['duplicates', 'groups'], of='count')} groups"]
        facts += [f"{num(dup[k], ['duplicates', k])} {k}" for k in ("dropped", "conflicts") if isinstance(dup.get(k), int)]
        out.append(f"<p>{', '.join(facts)}. Copies of one picture are kept in one split (unless the splits were given); byte-identical copies whose labels differ are a conflict.</p>")
        if not groups:
            out.append("<p>No duplicates found.</p>")
        for group in groups[:MAX_GROUPS]:
            if not isinstance(group, dict):
                continue
            names = [str(n) for n in group.get("names", [])] if isinstance(group.get("names"), list) else []
            labels = group.get("labels") if isinstance(group.get("labels"), list) else []
            splits = group.get("splits") if isinstance(group.get("splits"), list) else []
            kept = group.get("kept") if isinstance(group.get("kept"), list) else []
            figures = []
            for j, name in enumerate(names[:MAX_GROUP_IMAGES]):
                label = self.name(labels[j]) if j < len(labels) else "?"
                split = splits[j] if j < len(splits) else None
                where = split if split else "not written"
                if j < len(kept) and kept[j] is False:
                    where = "dropped"
                uri, why = self.thumbs.of_name(name)
                figures.append(self.figure(uri, why, f"{label} \u00b7 {where}", f"{name} ({label}, {where})"))
            more = f'<p class="muted">and {len(names) - MAX_GROUP_IMAGES} more copies</p>' if len(names) > MAX_GROUP_IMAGES else ""
            conflict = bool(group.get("conflict"))
            badge = '<span class="badge bad">conflict: different labels</span>' if conflict else ""
            out.append(
                f'<div class="group{" conflict" if conflict else ""}"><div>{_esc(group.get("kind", ""))} duplicates, '
                f'{len(names)} copies{badge}</div><div class="grid">{"".join(figures)}</div>{more}</div>'
            )
        if len(groups) > MAX_GROUPS:
            out.append(f'<p class="muted">and {len(groups) - MAX_GROUPS:,} more groups (all are listed in summary.json)</p>')
        return "\n".join(out)

    def balance(self) -> str:
        balance = self.s.get("split_balance")
        if not isinstance(balance, dict) or not balance:
            return ""
        splits = self.split_order

        def gap(entry: dict) -> float:
            try:
                return abs(float(entry["target"]) - float(entry["achieved"]))
            except OverflowError:  # an int beyond any float: no fraction a run writes, shown first
                return math.inf

        def worst(item) -> float:
            _, per = item
            gaps = [gap(v) for v in per.values() if isinstance(v, dict) and not isinstance(v.get("target"), bool) and not isinstance(v.get("achieved"), bool)
                    and isinstance(v.get("target"), (int, float)) and isinstance(v.get("achieved"), (int, float))]
            return max((g for g in gaps if not math.isnan(g)), default=0)

        items = [(k, v) for k, v in balance.items() if isinstance(v, dict)]
        if len(items) > MAX_BALANCE_ROWS:
            items = sorted(items, key=lambda kv: (-worst(kv), kv[0]))[:MAX_BALANCE_ROWS]
        else:
            items = sorted(items, key=lambda kv: (int(kv[0]) if _CLASS_KEY.fullmatch(kv[0]) else 0, kv[0]))
        head = "".join(f"<th class=r>{_esc(sp)}<br><span class=muted>target / achieved / images</span></th>" for sp in splits)
        rows = []
        for label, per in items:
            cells = []
            for sp in splits:
                entry = per.get(sp)
                if not isinstance(entry, dict):
                    cells.append("<td class=r>\u2013</td>")
                    continue
                parts = [_pct(entry[k], ["split_balance", label, sp, k]) for k in ("target", "achieved") if k in entry]
                if "images" in entry:
                    parts.append(num(entry["images"], ["split_balance", label, sp, "images"]))
                cells.append(f"<td class=r>{' / '.join(parts)}</td>")
            rows.append(f"<tr><td>{_esc(self.name(label))}</td>{''.join(cells)}</tr>")
        out = ["<h2>Split balance</h2>", f"<table><tr><th>class</th>{head}</tr>{''.join(rows)}</table>"]
        if len(balance) > len(items):
            out.append(f'<p class="muted">the {len(items)} classes furthest from their targets; and {len(balance) - len(items):,} more</p>')
        return "\n".join(out)

    def notes(self) -> str:
        key = "warnings" if isinstance(self.s.get("warnings"), list) and self.s["warnings"] else "split_notes"  # older runs: split_notes only
        notes = self.s.get(key)
        if not isinstance(notes, list) or not notes:
            return ""
        items = "".join(f"<li>{_esc(n)}</li>" for n in notes[:MAX_NOTES])
        more = f'<p class="muted">and {len(notes) - MAX_NOTES:,} more</p>' if len(notes) > MAX_NOTES else ""
        return f'<h2>Warnings: {num(len(notes), [key], of="count")}</h2>\n<ul class="warn">{items}</ul>{more}'

    def samples(self) -> str:
        from prep.tools.inspect import View

        out = ["<h2>Samples</h2>", f'<p class="muted">Up to {SAMPLES_PER_SPLIT} records per split, read back from the shards.</p>']
        for split in self.split_order:
            records, problem = sample_records(self.run_dir, self.s, split)
            figures = []
            for record in records:
                view = View(self.s, record)
                label = view.key.get("label")
                caption = self.name(record.get(label)) if label in record else "?"
                filename = record.get(view.key.get("filename", ""))
                title = filename.decode("utf-8", "replace") if isinstance(filename, bytes) else caption
                uri, why = self.thumbs.of_record(record, view)
                figures.append(self.figure(uri, why, caption, title))
            out.append(f"<h3>{_esc(split)}</h3>")
            out.append(f'<div class="grid">{"".join(figures)}</div>' if figures else '<p class="muted">no records</p>')
            if problem:
                out.append(f'<p class="warn">cannot read samples: {_esc(problem)}</p>')
        return "\n".join(out)


def render(summary: dict, run_dir: str, source=None, max_pixels: int = encoders.DEFAULT_MAX_PIXELS) -> str:
    """report.html's text for a finished (or just written) run: summary.json's content and its shards."""
    # As summary.json holds it (sorted keys, JSON types): the page a run writes and the one prep-report
    # rebuilds from the file are the same bytes.
    # The page shows the first MAX_SKIPPED_ROWS skipped images and their count: only they are copied (a run
    # may skip 900,000).
    skipped = summary.get("skipped")
    count = len(skipped) if isinstance(skipped, list) else 0
    if count > MAX_SKIPPED_ROWS:
        summary = {**summary, "skipped": skipped[:MAX_SKIPPED_ROWS]}
    summary = drawable(json.loads(json.dumps(summary, sort_keys=True)))
    return Page(summary, run_dir, Thumbnails(source, max_pixels), skipped_count=count).html()


def write(run_dir: str, summary: dict, source=None, max_pixels: int = encoders.DEFAULT_MAX_PIXELS) -> str:
    """Write report.html into run_dir atomically; returns its path."""
    path = storage.join(run_dir, REPORT)
    storage.write_bytes(path, render(summary, run_dir, source, max_pixels).encode("utf-8", "backslashreplace"), root=run_dir)
    return path


def write_for_run(run_dir: str, summary: dict, source, max_pixels: int) -> None:
    """The pipeline's call: the report never fails a run; a report that cannot be made is a warning."""
    try:
        write(run_dir, summary, source, max_pixels)
    except Exception as err:  # noqa: BLE001 - the shards are written and sound: a page about them must not undo that
        log.warning("%s not written: %s", REPORT, err)


# ------------------------------------------------------------------------------------------------ rebuilding

CONFIG_BYTES = 1 << 20  # a run's .hydra/config.yaml is a few kilobytes


def run_settings(run_dir: str) -> dict:
    """The run's own settings the rebuilt page keeps, from its .hydra/config.yaml (read without following a
    link): max_pixels, and the image folder source's extension and max_image_bytes (for --images). Never
    fails: a missing or unusable config gives the defaults. The folder the config names is never used: a run
    folder from someone else could name any folder of this machine."""
    settings = {"max_pixels": encoders.DEFAULT_MAX_PIXELS, "extension": None, "max_image_bytes": None}
    if storage.is_url(run_dir):
        return settings
    try:
        import yaml
        from omegaconf import OmegaConf

        text = read_in_run(run_dir, f"{HYDRA}/config.yaml", CONFIG_BYTES).decode("utf-8")
        # YAML aliases would be expanded into a tree (a "billion laughs" file): a config Hydra saves has none
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            raise ValueError("it holds YAML aliases, which Hydra does not write")
        cfg = OmegaConf.create(text)
    except FileNotFoundError:
        return settings
    except Exception as err:  # noqa: BLE001 - a config that no longer parses: the page is made with the defaults
        log.info("%s: cannot use the run's .hydra/config.yaml (%s)", run_dir, err)
        return settings
    for key, read in (("max_pixels", lambda: cfg.get("max_pixels")), ("extension", lambda: cfg.source.get("extension")),
                      ("max_image_bytes", lambda: cfg.source.get("max_image_bytes"))):
        try:
            value = read()
        except Exception:  # noqa: BLE001 - no such node, an interpolation that does not resolve
            continue
        if key == "extension" and (value is None or isinstance(value, str)):
            settings[key] = value
        elif key != "extension" and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            settings[key] = value
    return settings


def images_source(folder: str, settings: dict):
    """The image folder the user named with --images, read as the run's source reads it: only files inside it."""
    from prep.sources.image_dir import ImageDirSource

    if not storage.isdir(folder):
        raise PrepError(f"--images {folder}: no such folder")
    extra = {"max_image_bytes": settings["max_image_bytes"]} if settings.get("max_image_bytes") else {}
    return ImageDirSource(folder, settings.get("extension"), **extra)


@contextmanager
def run_lock(run_dir: str, create: bool):
    """Hold the run's lock (<run>/.prep-lock, the lock a prep run takes with flock for its whole run) while the
    page is made and written, so a run that replaces the folder (overwrite=true) and this page never
    interleave. The lock file is opened without following a link and made when missing only when `create`
    (writing into the run folder, which then holds prep's own files anyway): a run starting meanwhile opens
    the same file. Refused in one line while a run holds it. Object stores have no locks (as for runs)."""
    if storage.is_url(run_dir) or not os.path.isdir(storage.local(run_dir)):
        yield  # no folder to lock: reading its summary says what is wrong
        return
    import fcntl

    path = storage.join(run_dir, LOCK)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    # Made when missing only in a run folder (a folder without summary.json gets no stray file), and not
    # exclusively: a run starting meanwhile opens (and locks) the same file.
    make = create and os.path.lexists(storage.join(run_dir, SUMMARY))
    try:
        fd = open_fd_in_run(run_dir, LOCK, flags | (os.O_CREAT if make else 0))
    except FileNotFoundError:
        fd = None  # a run folder read only (-o elsewhere), or no run: nothing to take
    except OSError as err:
        raise PrepError(f"{path}: {read_problem(err) if err.errno != errno.EACCES else f'cannot lock: {err.strerror}'}") from None
    if fd is None:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise PrepError(f"{run_dir} is in use by a prep run: try again when it has finished") from None
            raise PrepError(f"{path}: cannot lock: {err.strerror or err}") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


EXAMPLES = """examples:
  %(prog)s outputs/digits/2026-11-21_10-00-00_4242            rebuild RUN_DIR/report.html
  %(prog)s outputs/flowers/2026-11-21_10-00-00_4242 -o /tmp/flowers.html   write it elsewhere
  %(prog)s outputs/flowers/2026-11-21_10-00-00_4242 --images data/flowers  with thumbnails of its skipped images"""


def _about() -> str:
    """The module docstring without its command line: what the tool does, for --help."""
    about = __doc__.split(": ", 1)[1]
    return about[0].upper() + about[1:]


def main(argv: list[str] | None = None, prog: str = "python -m prep.report") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=f"{EXAMPLES}\n\n{_about()}", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", help="a finished run's output directory (with summary.json)")
    parser.add_argument("-o", "--output", metavar="HTML", help=f"write the page here instead of RUN_DIR/{REPORT}")
    parser.add_argument("--images", metavar="DIR", help="the run's source image folder: thumbnails of skipped and duplicate "
                        "images are read from it (only files inside it); without it they are placeholders")
    parser.add_argument("--max-pixels", type=positive_int, metavar="N", help="decode images of at most N pixels (default: the "
                        f"run's max_pixels, at most {encoders.DEFAULT_MAX_PIXELS:,})")
    args = parser.parse_args(argv)
    try:
        path = args.output or storage.join(args.run_dir, REPORT)
        with run_lock(args.run_dir, create=args.output is None):
            summary = load_summary(args.run_dir)  # under the lock: the summary of the run the page is written for
            settings = run_settings(args.run_dir)
            max_pixels = args.max_pixels or min(settings["max_pixels"], encoders.DEFAULT_MAX_PIXELS)
            source = images_source(args.images, settings) if args.images else None
            text = render(summary, args.run_dir, source, max_pixels).encode("utf-8", "backslashreplace")
            try:
                storage.write_bytes(path, text, root=None if args.output else args.run_dir)  # -o: a folder of the user's
            except OSError as err:
                raise PrepError(f"{path}: cannot write: {err.strerror or err}") from None
    except (PrepError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({len(text):,} bytes)")
    return 0


def cli() -> None:
    """The `prep-report` command."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main(prog="prep-report"))


if __name__ == "__main__":
    sys.exit(main())
