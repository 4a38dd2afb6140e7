"""`prep-inspect RUN_DIR|SHARD` (or `python -m prep.inspect`): print the first records, and save a contact sheet with --grid.

People check a converted dataset by looking at it: shapes, labels and class names of the first records,
and `--grid out.png` draws the first N decoded images with their labels under them. Images are decoded
only after their header's size is checked against --max-pixels: one over it is drawn as a grey cell.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
from collections.abc import Iterator

from prep import encoders
from prep.core import storage
from prep.core.errors import EncodeError, PrepError
from prep.formats import ofrecord, tar, tfrecord
from prep.formats.images import HEADER_FORMATS, read_header, sniff_format
from prep.formats.protowire import WireError
from prep.load import load_summary, shard_records, sniff_records
from prep.load import records as run_records
from prep.runfiles.names import SUMMARY

CELL = 96  # contact-sheet cell size in pixels
CAPTION = 22  # caption strip under each cell
PLACEHOLDER = 200  # grey of the cell drawn for an image over max_pixels


class OverMaxPixels(EncodeError):
    """An image whose size is over max_pixels: not decoded."""


def _find_summary(path: str) -> tuple[dict | None, str | None]:
    """The summary.json of the run a shard belongs to (its folder, or the one above for OFRecord split folders),
    read as prep.load.load_summary reads it: a summary.json that is a symbolic link is an error, never followed."""
    folder = os.path.dirname(os.path.abspath(path))
    for candidate in (folder, os.path.dirname(folder)):
        if os.path.lexists(os.path.join(candidate, SUMMARY)):
            return load_summary(candidate), candidate
    return None, None


def _shard_format(path: str) -> tuple[str, str | None]:
    """(format, compression) of a shard without its summary: TFRecord when the first length CRC holds, plain
    or inside the gzip or zlib stream its magic bytes start; else OFRecord (which has no CRC), whose reading
    then says what is wrong. An image or empty file is refused."""
    try:
        with storage.open_read(path) as f:
            head = f.read(16)
        if not head:
            raise PrepError(f"{path}: an empty file, not a shard")
        if head.startswith(b"\x83\xafp\xd1\r\x88J?"):  # a Riegeli file signature: ArrayRecord
            return "arrayrecord", None
        image = sniff_format(head)
        if image:
            raise PrepError(f"{path}: a {image} image, not a record shard prep writes (TFRecord, OFRecord, ArrayRecord, WebDataset tar)")
        return sniff_records(path) or ("ofrecord", None)
    except OSError as err:  # a FIFO, device or folder where a shard should be, no permission
        raise PrepError(f"{path}: cannot read: {err.strerror or err}") from None


class View:
    """What is known about a run's keys: which holds the image, the label, the shape; and the class names."""

    def __init__(self, summary: dict | None, sample: dict) -> None:
        fields = (summary or {}).get("feature_fields") or {}
        if not fields:  # a shard without its summary: guess from the values and key names
            for key, value in sample.items():
                if isinstance(value, bytes) and sniff_format(value[:16]):
                    fields[key] = "encoded"
                elif "label" in key and isinstance(value, int):
                    fields[key] = "label"
                elif key.endswith(("height", "width")):
                    fields[key] = key.rsplit("/", 1)[-1]
                elif key.endswith(("channels", "chans")):
                    fields[key] = "channels"
        self.key = {field: key for key, field in fields.items()}
        self.names = {v: k for k, v in ((summary or {}).get("label_map") or {}).items()}
        self.raw = set((summary or {}).get("image_formats") or {}) == {"raw"}

    def label(self, record: dict) -> str:
        key = self.key.get("label")
        if key is None or key not in record:
            return "?"
        label = record[key]
        name = self.names.get(label) if isinstance(label, int) else None  # a damaged record may hold a list
        return f"{label} ({name})" if name is not None else str(label)

    def shape(self, record: dict) -> tuple[int, int, int] | None:
        """(height, width, channels) when the record holds all three as positive whole numbers."""
        keys = [self.key.get(f) for f in ("height", "width", "channels")]
        values = [record.get(k) for k in keys if k is not None]
        whole = [isinstance(v, int) or (isinstance(v, float) and v.is_integer()) for v in values]  # float-stored too
        if len(values) < 3 or not all(whole) or not all(v > 0 for v in values):
            return None
        return tuple(int(v) for v in values)

    def image(self, record: dict, max_pixels: int = encoders.DEFAULT_MAX_PIXELS):
        """Decoded pixels in OpenCV's BGR order; None when the record holds no image bytes.

        EncodeError says why bytes do not decode; OverMaxPixels (one of them) when the size the header (or the
        shape features of raw pixels) gives is over max_pixels: those bytes are never handed to a decoder.
        """
        import cv2
        import numpy as np

        data = record.get(self.key.get("encoded", ""))
        if not isinstance(data, bytes) or not data:
            return None
        shape = self.shape(record)
        fits = shape is not None and len(data) == shape[0] * shape[1] * shape[2]
        if self.raw or (fits and not sniff_format(data[:16])):
            to_bgr = {1: cv2.COLOR_GRAY2BGR, 3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGR}
            if not fits or shape[2] not in to_bgr:
                raise EncodeError(f"raw pixels of {len(data)} bytes do not match height x width x channels {list(shape or [])}")
            _check_size(shape[1], shape[0], max_pixels)
            return cv2.cvtColor(np.frombuffer(data, np.uint8).reshape(shape), to_bgr[shape[2]])
        info = read_header(data)  # EncodeError for bytes that are no image (or a format OpenCV does not read)
        _check_size(info.width, info.height, max_pixels)
        return encoders.decode(data, 3, max_pixels)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise OverMaxPixels(f"{width}x{height} is over max_pixels={max_pixels}")


def describe(record: dict, view: View) -> str:
    parts = []
    for key in sorted(record):
        value = record[key]
        if key == view.key.get("encoded") and isinstance(value, bytes):
            fmt = "raw" if view.raw else sniff_format(value[:16]) or "bytes"
            shape = view.shape(record)
            if shape is None and fmt in HEADER_FORMATS:  # no shape features: the image's own header has it
                try:
                    info = read_header(value)
                    shape = (info.height, info.width, info.channels)
                except EncodeError:
                    pass
            dims = "x".join(map(str, shape)) if shape else "?"
            parts.append(f"{key}: {fmt} {dims}, {len(value):,} bytes")
        elif key == view.key.get("label"):
            parts.append(f"{key}: {view.label(record)}")
        elif isinstance(value, bytes):
            parts.append(f"{key}: {value[:40].decode('utf-8', 'replace')!r}" if len(value) <= 40 else f"{key}: {len(value):,} bytes")
        else:
            parts.append(f"{key}: {value}")
    return "\n  ".join(parts)


def contact_sheet(records: list[dict], view: View, columns: int = 8, max_pixels: int = encoders.DEFAULT_MAX_PIXELS):
    """A grid of decoded images, each fitted into a CELL x CELL square, with its label written under it;
    and a note for each image not drawn: a grey cell for one over max_pixels, a blank one for one that does
    not decode."""
    import cv2
    import numpy as np

    columns = max(1, min(columns, len(records)))
    rows = -(-len(records) // columns)
    sheet = np.full((rows * (CELL + CAPTION), columns * CELL, 3), 255, np.uint8)
    notes = []
    for i, record in enumerate(records):
        top, left = (i // columns) * (CELL + CAPTION), (i % columns) * CELL
        try:
            image = view.image(record, max_pixels)
        except OverMaxPixels as err:
            image = None
            sheet[top : top + CELL, left : left + CELL] = PLACEHOLDER
            notes.append(f"record {i}: {err}, drawn as a grey cell (raise --max-pixels to see it)")
        except EncodeError as err:
            image = None
            notes.append(f"record {i}: image does not decode ({err}), its cell is blank")
        if image is not None:
            scale = min((CELL - 4) / image.shape[1], (CELL - 4) / image.shape[0])  # a 2-pixel gap around each
            size = (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA)
            y, x = top + (CELL - size[1]) // 2, left + (CELL - size[0]) // 2
            sheet[y : y + size[1], x : x + size[0]] = image
        cv2.putText(sheet, view.label(record)[:14], (left + 3, top + CELL + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet, notes


def load_target(target: str, split: str | None) -> tuple[Iterator[dict], dict | None]:
    if storage.isdir(target):
        summary = load_summary(target)
        return run_records(target, split), summary
    if not storage.exists(target):
        raise PrepError(f"{target}: no such run directory or shard file")
    summary, _ = _find_summary(target) if not storage.is_url(target) else (None, None)
    fmt, compression = (summary["format"], summary.get("compression")) if summary else _shard_format(target)
    records = shard_records(target, fmt, compression)
    try:
        first = next(records, None)
    except (tfrecord.RecordError, ofrecord.RecordError, WireError, tar.TarError) as err:  # the first record does not read: no shard
        what = f"a {fmt} shard" if summary else "a record shard"
        raise PrepError(f"{target}: not {what} ({str(err).removeprefix(target + ': ')})") from None
    return itertools.chain([first] if first is not None else [], records), summary


def _count(least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= {least}")
        return value

    return parse


EXAMPLES = """examples:
  %(prog)s outputs/digits/2026-11-21_10-00-00_4242                      the first 3 records of a run
  %(prog)s outputs/digits/2026-11-21_10-00-00_4242 --split train -n 10  the first 10 of one split
  %(prog)s outputs/digits/2026-11-21_10-00-00_4242 --grid sheet.png     and a contact sheet of 32 images
  %(prog)s outputs/mnist_ofrecord/2026-11-21_10-00-00_4242/train/part-0 one shard, any format"""


def _about() -> str:
    """The module docstring without its command line: what the tool does, for --help."""
    about = __doc__.split(": ", 1)[1]
    return about[0].upper() + about[1:]


def main(argv: list[str] | None = None, prog: str = "python -m prep.inspect") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=f"{EXAMPLES}\n\n{_about()}", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", help="a run's output directory or one shard file")
    parser.add_argument("-n", "--records", type=_count(0), default=3, help="records to print (default 3)")
    parser.add_argument("--split", help="only this split of a run")
    parser.add_argument("--grid", metavar="PNG", help="save a contact sheet of the first --count images")
    parser.add_argument("--count", type=_count(1), default=32, help="images in the contact sheet (default 32)")
    parser.add_argument("--columns", type=_count(1), default=8, help="contact-sheet columns (default 8)")
    parser.add_argument("--max-pixels", type=_count(1), default=encoders.DEFAULT_MAX_PIXELS,
                        help=f"draw images of at most this many pixels; larger ones are not decoded (default {encoders.DEFAULT_MAX_PIXELS:,})")
    args = parser.parse_args(argv)
    try:
        stream, summary = load_target(args.target, args.split)
        first = list(itertools.islice(stream, max(args.records, args.count if args.grid else 0)))
        if not first:
            raise PrepError(f"{args.target}: no records")
        view = View(summary, first[0])
        if summary:
            print(f"{summary['dataset']}: {summary['num_records']} {summary['format']} records in {len(summary['shards'])} shards, "
                  f"splits {json.dumps({k: v['num_records'] for k, v in summary['splits'].items()})}")
        for i, record in enumerate(first[: args.records]):
            print(f"record {i}:\n  {describe(record, view)}")
        if args.grid:
            import cv2

            sheet, notes = contact_sheet(first[: args.count], view, args.columns, args.max_pixels)
            for note in notes:
                print(f"note: {note}")
            try:
                written = cv2.imwrite(args.grid, sheet)
            except cv2.error:  # OpenCV raises for an extension it has no writer for
                written = False
            if not written:
                raise PrepError(f"{args.grid}: cannot write the contact sheet (is the extension .png?)")
            print(f"contact sheet of {min(len(first), args.count)} images: {args.grid} ({sheet.shape[1]}x{sheet.shape[0]})")
        return 0
    except (PrepError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def cli() -> None:
    """The `prep-inspect` command."""
    # `prep-inspect ... | head` ends quietly, as other Unix tools do, not with a broken-pipe error line
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main(prog="prep-inspect"))


if __name__ == "__main__":
    sys.exit(main())
