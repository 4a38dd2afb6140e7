"""DigitsSource: scikit-learn's 8x8 digits, the embedded demo, read from the file scikit-learn ships."""

from __future__ import annotations

import functools
import os

from prep.sources.base import LabelEntry, Source


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


class DigitsSource(Source):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 10 classes): the embedded demo."""

    payload = "array"
    one_shape = True  # 8 x 8

    def check(self) -> None:
        pass

    def describe(self) -> str:
        return "sklearn.datasets.load_digits"

    def labelled_entries(self) -> list[LabelEntry]:
        _, targets = _digits()
        return [LabelEntry(f"digit_{i:04d}", str(int(t)), f"digits[{i}]", i) for i, t in enumerate(targets)]

    def read(self, ref: int):
        return _digits()[0][ref]
