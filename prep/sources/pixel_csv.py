"""PixelCsvSource: MNIST-style CSV rows of pixels, streamed by row offsets."""

from __future__ import annotations

import math
import os
import threading

from prep.core import storage
from prep.core.errors import EncodeError, InputError
from prep.sources.base import LabelEntry, Source, clean
from prep.sources.lines import BOM, MAX_LINE_BYTES, read_lines


class PixelCsvSource(Source):
    """MNIST-style CSV: one image per row, a label column and height x width (x channels) pixel columns.

    The planner scans the file once for labels and row offsets; shard tasks seek to their rows, so the
    file is streamed, never loaded whole. Bad rows are reported per image with their line numbers.
    """

    payload = "array"
    one_shape = True  # source.shape
    header_fix = "set source.header=true"  # how a header line is skipped, for the reader's label-kind messages

    def __init__(self, path: str, shape: list[int] | tuple[int, ...] = (28, 28), label_column: int = 0, header: bool = False) -> None:
        if not path:
            raise InputError("source.path is not set: give the pixel CSV, e.g. source.path=mnist_train_small.csv")
        shape = tuple(int(n) for n in shape)
        if len(shape) not in (2, 3) or min(shape) < 1 or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
            raise InputError(f"source.shape={list(shape)}: expected [height, width] or [height, width, channels of 1, 3 or 4]")
        self.path = path
        self.shape = shape
        self.columns = 1 + math.prod(shape)
        if not 0 <= label_column < self.columns:
            raise InputError(f"source.label_column={label_column}: must be 0..{self.columns - 1} for {self.columns} columns")
        self.label_column = label_column
        self.header = header
        self._file = None
        self._lock = threading.Lock()  # shard tasks may read on several threads; the file position is shared

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_lock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def check(self) -> None:
        if not storage.isfile(self.path):
            if storage.isdir(self.path):
                raise InputError(f"source.path={self.path}: is a folder, expected the pixel CSV file")
            if storage.exists(self.path):  # opening a FIFO would wait for a writer forever
                raise InputError(f"source.path={self.path}: not a regular file (a FIFO, socket or device), expected the pixel CSV file")
            raise InputError(f"source.path={self.path}: no such file")

    def describe(self) -> str:
        return self.path

    def input_paths(self) -> list[str]:
        return [self.path]

    def stamp(self, ref) -> str | None:
        """The CSV's size and modification time: a resumed run rewrites every shard if the file changed."""
        try:
            if storage.is_url(self.path):
                info = storage.info(self.path)
                return f"{info.get('size')}:{info.get('ETag') or info.get('mtime') or info.get('LastModified')}"
            st = os.stat(self.path)
            return f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            return None

    def labelled_entries(self) -> list[LabelEntry]:
        self.check()
        out = []
        base = os.path.basename(self.path)
        # A row holds `columns` numbers: allow a generous 64 bytes each before calling a line broken.
        max_bytes = max(MAX_LINE_BYTES, 64 * self.columns)
        try:
            with storage.open_read(self.path) as f:
                offset = 0
                for number, line in read_lines(f, self.path, max_bytes):
                    start, offset = offset, offset + len(line)
                    if number == 1 and self.header:
                        self._check_header_row(line.replace(BOM, b"").strip())
                        continue
                    text = line.replace(BOM, b"").strip()
                    if not text:
                        continue
                    if number == 1:
                        self._check_first_row(text)
                    cells = text.split(b",", self.label_column + 1)
                    raw = cells[self.label_column].strip() if len(cells) > self.label_column else b""
                    try:
                        label = clean(raw.decode("utf-8"))
                    except UnicodeDecodeError:
                        raise InputError(f"{self.path}:{number}: the label {raw[:60]!r} is not UTF-8 text") from None
                    if not label:
                        raise InputError(f"{self.path}:{number}: no label in column {self.label_column}: {text[:60]!r}")
                    out.append(LabelEntry(f"{base}:{number}", label, f"{self.path}:{number}", (start, len(line), number)))
        except OSError as err:
            raise InputError(f"source.path={self.path}: cannot read: {err.strerror or err}") from None
        return out

    def _check_header_row(self, text: bytes) -> None:
        """source.header=true on a file without one would drop the first image silently: a header has a
        word in it, or numbers the columns (0,1,2,... as pandas writes them)."""
        cells = [c.strip() for c in text.split(b",")]
        if cells and all(_is_number(c) for c in cells) and not _numbers_columns(cells):
            raise InputError(
                f"{self.path}:1: source.header=true, but the first row is pixel values, not a header: "
                "set source.header=false (or leave it out)"
            )

    def _check_first_row(self, text: bytes) -> None:
        """A first row whose pixel columns are not numbers is a header: reading it as an image would fail anyway.
        So is one that numbers the columns 0,1,2,... (pandas' to_csv): it would pass as an image."""
        if _numbers_columns([c.strip() for c in text.split(b",")]):
            raise InputError(
                f"{self.path}:1: the first row numbers the columns (0,1,2,...): it is a header line, set source.header=true"
            )
        cells = text.split(b",")
        pixels = cells[: self.label_column] + cells[self.label_column + 1 :]
        bad = next((c.strip() for c in pixels if not _is_number(c)), None)
        if bad is not None:
            raise InputError(
                f"{self.path}:1: the first row is not pixel values ({bad.decode('utf-8', 'replace')[:30]!r} is not a number): "
                "if it is a header line, set source.header=true"
            )

    def read(self, ref: tuple[int, int, int]):
        import numpy as np

        offset, size, number = ref
        with self._lock:
            if self._file is None:
                self._file = storage.open_read(self.path)
            self._file.seek(offset)
            line = self._file.read(size)
        cells = line.replace(BOM, b"").strip().split(b",")
        if len(cells) != self.columns:
            raise EncodeError(f"line {number}: expected {self.columns} columns (label + {self.columns - 1} pixels), got {len(cells)}")
        del cells[self.label_column]
        try:
            values = np.array([float(c) for c in cells])
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise EncodeError(f"line {number}: non-numeric pixel {bad.decode('utf-8', 'replace')!r}") from None
        if values.min() < 0 or values.max() > 255 or not np.all(values == np.round(values)):
            bad = next(v for v in values if v < 0 or v > 255 or v != round(v))
            raise EncodeError(f"line {number}: pixel value {bad:g} is not an integer in 0..255")
        return values.astype(np.uint8).reshape(self.shape)


def _numbers_columns(cells: list[bytes]) -> bool:
    """0,1,2,...,n-1 or 1,2,...,n: a header that names columns by their numbers."""
    if len(cells) < 3 or not all(c.isdigit() for c in cells):
        return False
    first = int(cells[0])
    return first in (0, 1) and all(int(c) == first + i for i, c in enumerate(cells))


def _is_number(cell: bytes) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False
