"""Reading ArrayRecord files (Google's random-access record format; TFDS's and Grain's default) through the
`array_record` package, the one reader of the format (the `arrayrecord` extra: pip install 'prep[arrayrecord]').

Writing is prep/writers/arrayrecord.py. Files are written with `group_size:1`, as TFDS writes them, so
that reading record i decompresses one record, not a group.
"""

from __future__ import annotations

from collections.abc import Iterator

from prep.errors import ConfigError

WRITER_OPTIONS = "group_size:1"  # as TFDS's ArrayRecordFileAdapter writes: one record per chunk group
_BATCH = 256  # records read per call when reading a file through


def module():
    """The array_record extension module, or a ConfigError saying how to install it."""
    try:
        from array_record.python import array_record_module
    except ImportError:
        raise ConfigError("ArrayRecord needs the array_record package: pip install 'prep[arrayrecord]' (or array-record)") from None
    return array_record_module


class Reader:
    """Random access to one ArrayRecord file: len(reader), reader.read(i) -> bytes, reader.read_many([i, ...])."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._reader = module().ArrayRecordReader(path)
        self._count = self._reader.num_records()

    def __len__(self) -> int:
        return self._count

    def read(self, index: int) -> bytes:
        if not 0 <= index < self._count:
            raise IndexError(f"{self.path}: record {index} of {self._count}")
        return self._reader.read([index])[0]

    def read_many(self, indices: list[int]) -> list[bytes]:
        return self._reader.read(list(indices))

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_payloads(path: str) -> Iterator[bytes]:
    """Every record of one file, in order, read in batches (memory bounded by the batch, not the file)."""
    with Reader(path) as reader:
        for start in range(0, len(reader), _BATCH):
            yield from reader.read_many(range(start, min(start + _BATCH, len(reader))))
