"""Reading ArrayRecord files (Google's random-access record format; TFDS's and Grain's default) through the
`array_record` package, the one reader of the format (the `arrayrecord` extra: pip install 'prep-records[arrayrecord]').

Writing is prep/writers/arrayrecord.py. Files are written with `group_size:1`, as TFDS writes them, so
that reading record i decompresses one record, not a group.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prep.core.errors import ConfigError, InputError, PrepError

_READ_IN: int | None = None  # the process that opened ArrayRecord files (a forked child cannot, see Reader)
RANDOM_ACCESS_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"  # the library's advice for random access
WRITER_OPTIONS = "group_size:1"  # as TFDS's ArrayRecordFileAdapter writes: one record per chunk group
_BATCH = 256  # records read per call when reading a file through


class RecordError(PrepError):
    """A file array_record cannot read as ArrayRecord (not one, truncated, damaged)."""


def module():
    """The array_record extension module, or a ConfigError saying how to install it."""
    try:
        from array_record.python import array_record_module
    except ImportError:
        raise ConfigError("ArrayRecord needs the array_record package: pip install 'prep-records[arrayrecord]' (or array-record)") from None
    return array_record_module


class Reader:
    """Random access to one ArrayRecord file: len(reader), reader.read(i) -> bytes, reader.read_many([i, ...]).

    random_access=True reads one record per call with no read-ahead and no thread pool (as Grain opens
    files): nothing is shared with a parent process, so a reader opened in a forked worker (a PyTorch
    DataLoader's) works even after the parent has read; the library's thread pool does not survive a fork.
    """

    def __init__(self, path: str, random_access: bool = False) -> None:
        global _READ_IN
        self.path = path
        if _READ_IN not in (None, os.getpid()):
            # The library's threads and locks do not survive a fork: a reader opened in a child forked after
            # the parent read ArrayRecord files hangs or crashes (a segfault in PyTorch DataLoader workers).
            raise ConfigError(
                f"{path}: ArrayRecord files cannot be read in a process forked after its parent read them (the array_record "
                "library does not survive fork): start the workers with spawn, e.g. DataLoader(..., multiprocessing_context='spawn'), "
                "or do not read the dataset in the parent before the workers start"
            )
        _READ_IN = os.getpid()
        if not os.path.isfile(path):  # the library reports a missing file only as "not ok"
            raise InputError(f"{path}: cannot read: {'is a folder' if os.path.isdir(path) else 'No such file or directory'}")
        try:
            self._reader = module().ArrayRecordReader(path, RANDOM_ACCESS_OPTIONS if random_access else "")
        except RuntimeError as err:
            raise RecordError(f"{path}: not an ArrayRecord file ({err})") from None
        if not self._reader.ok():
            try:
                self._reader.close()
            except RuntimeError:  # closing a reader of a damaged file raises what opening it found
                pass
            raise RecordError(f"{path}: not an ArrayRecord file (or a truncated or damaged one)")
        self._count = self._reader.num_records()

    def __len__(self) -> int:
        return self._count

    def read(self, index: int) -> bytes:
        if not 0 <= index < self._count:
            raise IndexError(f"{self.path}: record {index} of {self._count}")
        return self._reader.read([index])[0]

    def read_many(self, indices: list[int]) -> list[bytes]:
        try:
            return self._reader.read(list(indices))
        except RuntimeError as err:  # a damaged chunk
            raise RecordError(f"{self.path}: {err}") from None

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_payloads(path: str) -> Iterator[bytes]:
    """Every record of one local file, in order, read in batches (memory bounded by the batch, not the file).
    The array_record library reads local files only: a shard in object storage is copied first by the caller
    (prep.core.storage.local_copy)."""
    with Reader(path) as reader:
        for start in range(0, len(reader), _BATCH):
            yield from reader.read_many(range(start, min(start + _BATCH, len(reader))))
