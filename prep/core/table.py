"""The item table: every image to convert, held as a few flat arrays instead of a million Python objects.

A million items take about 30 MB here (names as one UTF-8 buffer with offsets, labels and refs as integer
arrays), against about 200 MB as Item tuples; a slice for a shard task pickles only its own rows. The table
is a Sequence of Item: code that iterates or indexes it sees Item tuples, made as they are read.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from prep.core.values import Item


class Strings(Sequence):
    """An immutable sequence of str stored as one UTF-8 buffer and an offsets array (8 bytes a string).

    A slice is a view of the same buffer (a shard's items cost nothing more in the driver); pickled, it
    carries only its own bytes.
    """

    __slots__ = ("_data", "_offsets")

    def __init__(self, data: bytes | bytearray | memoryview, offsets: np.ndarray) -> None:
        self._data = data
        self._offsets = offsets  # int64, len(self) + 1: string i is data[offsets[i]:offsets[i + 1]]

    def __reduce__(self):
        low, high = int(self._offsets[0]), int(self._offsets[-1])
        return Strings, (bytes(self._data[low:high]), self._offsets - low)

    @classmethod
    def of(cls, values: Iterable[str]) -> "Strings":
        builder = StringsBuilder()
        for value in values:
            builder.append(value)
        return builder.build()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return self.take(np.arange(start, stop, step))
            stop = max(start, stop)
            data = self._data if isinstance(self._data, memoryview) else memoryview(self._data)
            return Strings(data, self._offsets[start : stop + 1])
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("Strings index out of range")
        return str(self._data[self._offsets[index] : self._offsets[index + 1]], "utf-8", "surrogatepass")

    def __iter__(self) -> Iterator[str]:
        data, offsets = self._data, self._offsets.tolist()
        for low, high in zip(offsets, offsets[1:]):
            yield str(data[low:high], "utf-8", "surrogatepass")

    def take(self, indices) -> "Strings":
        builder = StringsBuilder()
        data, offsets = self._data, self._offsets
        for i in np.asarray(indices, dtype=np.int64).tolist():
            builder.append_bytes(data[offsets[i] : offsets[i + 1]])
        return builder.build()

    @property
    def nbytes(self) -> int:
        return int(self._offsets[-1] - self._offsets[0]) + self._offsets.nbytes


class StringsBuilder:
    """Appends strings to a growing buffer; build() freezes it into Strings."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = array("q")

    def append(self, value: str) -> None:
        self._data += value.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._data))

    def extend(self, values: list[str]) -> None:
        """Append many strings: plain ASCII ones in one join, their lengths counted in C."""
        joined = "".join(values)
        if not joined.isascii():
            for value in values:
                self.append(value)
            return
        base = len(self._data)
        self._data += joined.encode("ascii")
        ends = np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=len(values))) + base
        self._ends.frombytes(ends.tobytes())

    def append_bytes(self, value: bytes) -> None:
        self._data += value
        self._ends.append(len(self._data))

    def __len__(self) -> int:
        return len(self._ends)

    def build(self) -> Strings:
        offsets = np.zeros(len(self._ends) + 1, dtype=np.int64)
        if self._ends:
            offsets[1:] = np.frombuffer(self._ends, dtype=np.int64)
        data, self._data, self._ends = self._data, bytearray(), array("q")
        return Strings(data, offsets)  # the buffer itself, not a copy: the builder starts over


class ItemTable(Sequence):
    """The items of a run, in order: names, labels and refs as columns.

    refs is None when every item's ref is its name (a file of an image folder), else an int64 array of
    one ref per row (an index) or one tuple of ints per row (a pixel-CSV row: offset, size, line).
    """

    __slots__ = ("names", "labels", "refs")

    def __init__(self, names: Strings, labels: np.ndarray, refs: np.ndarray | None = None) -> None:
        self.names = names
        self.labels = labels
        self.refs = refs

    @classmethod
    def of(cls, items: Iterable[Item]) -> "ItemTable":
        """A table of Item tuples (for tests and small sources)."""
        items = list(items)
        names = Strings.of(item.name for item in items)
        labels = np.fromiter((item.label for item in items), dtype=np.int64, count=len(items))
        if all(item.ref == item.name for item in items):
            return cls(names, labels)
        return cls(names, labels, np.array([item.ref for item in items], dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def _ref(self, index: int, name: str):
        if self.refs is None:
            return name
        ref = self.refs[index]
        return int(ref) if ref.ndim == 0 else tuple(ref.tolist())

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ItemTable(self.names[index], self.labels[index], None if self.refs is None else self.refs[index])
        if index < 0:
            index += len(self)
        name = self.names[index]
        return Item(name, int(self.labels[index]), self._ref(index, name))

    def __iter__(self) -> Iterator[Item]:
        labels = self.labels.tolist()
        if self.refs is None:
            for name, label in zip(self.names, labels):
                yield Item(name, label, name)
            return
        refs = self.refs.tolist()
        for name, label, ref in zip(self.names, labels, refs):
            yield Item(name, label, tuple(ref) if isinstance(ref, list) else ref)

    def take(self, indices) -> "ItemTable":
        indices = np.asarray(indices, dtype=np.int64)
        return ItemTable(self.names.take(indices), self.labels[indices], None if self.refs is None else self.refs[indices])

    def __repr__(self) -> str:
        return f"ItemTable({len(self)} items)"

    @property
    def nbytes(self) -> int:
        return self.names.nbytes + self.labels.nbytes + (0 if self.refs is None else self.refs.nbytes)


def label_counts(members) -> dict[int, int]:
    """{label: images} of a split's members: counted in numpy for a table, one by one for a list."""
    if isinstance(members, ItemTable):
        values, counts = np.unique(members.labels, return_counts=True)
        return dict(zip(values.tolist(), counts.tolist()))
    counts: dict[int, int] = {}
    for item in members:
        counts[item.label] = counts.get(item.label, 0) + 1
    return counts


def sorted_unique(values) -> np.ndarray:
    """The distinct values of an int64 array, sorted (np.unique's hash table is slower for a million)."""
    out = np.sort(np.asarray(values, dtype=np.int64))
    if len(out) > 1:
        out = out[np.concatenate(([True], out[1:] != out[:-1]))]
    return out


def repeated(values) -> np.ndarray:
    """The values an int64 array holds more than once, sorted."""
    ordered = np.sort(np.asarray(values, dtype=np.int64))
    return sorted_unique(ordered[1:][ordered[1:] == ordered[:-1]])


def sorted_contains(haystack: np.ndarray, needles) -> np.ndarray:
    """A bool array: which needles are in the sorted int64 array haystack."""
    needles = np.asarray(needles, dtype=np.int64)
    if not len(haystack):
        return np.zeros(len(needles), dtype=bool)
    order = np.argsort(needles)  # searched in order, the big array is read front to back, not at random
    ordered = needles[order]
    at = np.minimum(haystack.searchsorted(ordered), len(haystack) - 1)
    found = np.empty(len(needles), dtype=bool)
    found[order] = haystack[at] == ordered
    return found
