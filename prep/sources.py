"""Sources: where images come from (a folder of files, scikit-learn's digits) and how a shard task reads one."""

from __future__ import annotations

import functools
import math
import os
import posixpath
import threading
from typing import NamedTuple

from prep import storage
from prep.errors import EncodeError, InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")


class LabelEntry(NamedTuple):
    """One labelled image as a label file (or a source with embedded labels) names it."""

    name: str
    label: str
    where: str  # "file:line" for messages
    ref: object = None  # set by sources that know how to find the image without a path


class ImageDirSource:
    """A folder of encoded image files; label files name them by path relative to `image_dir`."""

    payload = "bytes"

    def __init__(self, image_dir: str, extension: str | None = None) -> None:
        if not image_dir:
            raise InputError("source.image_dir is not set: give the folder of images, e.g. source.image_dir=/data/val")
        if extension and not extension.startswith("."):
            extension = "." + extension
        self.image_dir = image_dir
        self.extension = extension or None
        self._listing: tuple[set[str], set[str]] | None = None

    def __getstate__(self) -> dict:
        # Shard tasks only read files; the folder listing stays with the planner.
        return {**self.__dict__, "_listing": None}

    def check(self) -> None:
        if not storage.isdir(self.image_dir):
            raise InputError(f"source.image_dir={self.image_dir}: no such folder")

    def describe(self) -> str:
        return self.image_dir

    def _scan(self) -> tuple[set[str], set[str]]:
        """All files below the folder (relative posix paths) and the symlinks among them that lead outside it."""
        if self._listing is None and storage.is_url(self.image_dir):
            self.check()
            self._listing = (set(storage.find(self.image_dir)), set())  # object stores have no symlinks
        if self._listing is None:
            self.check()
            root = os.path.realpath(self.image_dir)
            files: set[str] = set()
            escaping: set[str] = set()
            stack = [""]
            while stack:
                rel = stack.pop()
                try:
                    entries = list(os.scandir(os.path.join(self.image_dir, rel)))
                except OSError as err:
                    raise InputError(f"{os.path.join(self.image_dir, rel)}: cannot list folder: {err.strerror}") from None
                for entry in entries:
                    path = posixpath.join(rel, entry.name) if rel else entry.name
                    if entry.is_symlink():
                        target = os.path.realpath(entry.path)
                        if os.path.commonpath([root, target]) != root:
                            escaping.add(path)
                            continue
                    if entry.is_dir():
                        stack.append(path)
                    elif entry.is_file():
                        files.add(path)
            self._listing = (files, escaping)
        return self._listing

    def files(self) -> list[str]:
        """Every file below the folder, sorted, as relative posix paths."""
        return sorted(self._scan()[0])

    def image_files(self) -> list[str]:
        return [f for f in self.files() if f.lower().endswith(IMAGE_EXTENSIONS) and not posixpath.basename(f).startswith(".")]

    def resolve(self, name: str) -> str:
        """The relative path of a named image; EncodeError with the reason when it cannot be used."""
        path = name.strip().replace("\\", "/")
        if self.extension and not posixpath.splitext(path)[1]:
            path += self.extension
        if path.startswith("/") or posixpath.isabs(path) or (len(path) > 1 and path[1] == ":"):
            raise EncodeError("absolute path: label files name images relative to source.image_dir")
        path = posixpath.normpath(path)
        if path == ".." or path.startswith("../"):
            raise EncodeError("path escapes source.image_dir")
        files, escaping = self._scan()
        if path in escaping:
            raise EncodeError("symlink points outside source.image_dir")
        if path not in files:
            raise EncodeError("listed in the label file but missing from source.image_dir")
        return path

    def labelled_entries(self) -> list[LabelEntry]:
        raise InputError("source=image_dir has no labels of its own: choose labels=space|jsonl|csv|subdirs")

    def read(self, ref: str) -> bytes:
        try:
            return storage.read_bytes(storage.join(self.image_dir, ref))
        except OSError as err:
            raise EncodeError(f"cannot read: {err.strerror or err}") from None


@functools.lru_cache(maxsize=1)
def _digits():
    """(images uint8 Nx8x8, targets) of scikit-learn's digits, read from the file it ships.

    Reading digits.csv.gz directly takes 0.2 s; importing sklearn.datasets for load_digits takes 1.5 s.
    """
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if spec else ""
    if os.path.exists(path):
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        pixels, targets = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    else:  # a scikit-learn that stores the file elsewhere
        from sklearn.datasets import load_digits

        digits = load_digits()
        pixels, targets = digits.images, digits.target
    # 0..16 intensities -> 0..255, rounded the same way everywhere so shards are reproducible.
    return np.rint(pixels * (255.0 / 16.0)).astype(np.uint8), targets


class DigitsSource:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 10 classes): the embedded demo."""

    payload = "array"

    def check(self) -> None:
        pass

    def describe(self) -> str:
        return "sklearn.datasets.load_digits"

    def labelled_entries(self) -> list[LabelEntry]:
        _, targets = _digits()
        return [LabelEntry(f"digit_{i:04d}", str(int(t)), f"digits[{i}]", i) for i, t in enumerate(targets)]

    def read(self, ref: int):
        return _digits()[0][ref]


class PixelCsvSource:
    """MNIST-style CSV: one image per row, a label column and height x width (x channels) pixel columns.

    The planner scans the file once for labels and row offsets; shard tasks seek to their rows, so the
    file is streamed, never loaded whole. Bad rows are reported per image with their line numbers.
    """

    payload = "array"

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
            raise InputError(f"source.path={self.path}: no such file")

    def describe(self) -> str:
        return self.path

    def labelled_entries(self) -> list[LabelEntry]:
        self.check()
        out = []
        base = os.path.basename(self.path)
        with storage.open_read(self.path) as f:
            offset = 0
            for number, line in enumerate(f, start=1):
                start, offset = offset, offset + len(line)
                if number == 1 and self.header:
                    continue
                text = line.strip()
                if not text:
                    continue
                cells = text.split(b",", self.label_column + 1)
                label = cells[self.label_column].strip().decode("utf-8", "replace") if len(cells) > self.label_column else ""
                if not label:
                    raise InputError(f"{self.path}:{number}: no label in column {self.label_column}: {text[:60]!r}")
                out.append(LabelEntry(f"{base}:{number}", label, f"{self.path}:{number}", (start, len(line), number)))
        return out

    def read(self, ref: tuple[int, int, int]):
        import numpy as np

        offset, size, number = ref
        with self._lock:
            if self._file is None:
                self._file = storage.open_read(self.path)
            self._file.seek(offset)
            line = self._file.read(size)
        cells = line.strip().split(b",")
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


def _is_number(cell: bytes) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False
