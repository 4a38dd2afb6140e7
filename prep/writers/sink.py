"""A shard on its way to disk: written under a temporary name, hashed as it goes, published whole."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable, Mapping
from typing import Protocol

from prep.core import storage
from prep.core.errors import WriteError
from prep.formats import protowire


class Framing(Protocol):
    """What a sink asks of its writer (prep.writers.base.RecordWriter meets it): the record frames, the bytes
    that end a shard, and the shard-level options."""

    compression: str | None
    dali_index: bool

    def frame(self, values: Mapping[str, object]) -> list[bytes]: ...

    def footer(self) -> bytes: ...


class _HashingFile:
    """The shard's bytes on their way out: counted, hashed, and written with few copies.

    Small pieces (record headers, labels) are gathered in a buffer; a large one (an image) goes to the
    unbuffered file directly after the buffer, so image bytes are not copied through a write buffer.
    """

    _GATHER = 1 << 20

    def __init__(self, file) -> None:
        self._file = file
        self._pending = bytearray()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def _write_all(self, data) -> None:
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) :]

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        if len(data) < protowire.SMALL:
            self._pending += data
            if len(self._pending) >= self._GATHER:
                self.flush()
        else:
            self.flush()
            self._write_all(data)
        return len(data)

    def flush(self) -> None:
        if self._pending:
            self._write_all(self._pending)
            self._pending.clear()


class ShardSink:
    """One shard being written under a temporary name and published whole when complete.

    Locally it is `<name>.partial`, renamed at the end; on object storage it is uploaded once, complete.
    A run that dies part-way never leaves half a shard under a final name.
    """

    def __init__(self, writer: Framing, output_dir: str, path: str) -> None:
        self.writer = writer
        self.output_dir = output_dir
        self.path = path
        self.final = storage.join(output_dir, path)
        self.num_records = 0
        self.bytes_written = 0  # record bytes before compression, for the progress bar
        self._offset = 0  # position in the uncompressed stream, for DALI index lines
        self._index: list[str] | None = [] if writer.dali_index else None
        try:
            self._file = storage.AtomicFile(self.final, root=output_dir)
        except OSError as err:
            raise WriteError(f"{self.final}: cannot create shard: {err.strerror}") from None
        self._raw = _HashingFile(self._file.file)
        compression = writer.compression
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6) if compression == "gzip" else None
        self._zlib = zlib.compressobj(6) if compression == "zlib" else None

    def _out(self, data: bytes) -> None:
        if self._gzip is not None:
            self._gzip.write(data)
        elif self._zlib is not None:
            self._raw.write(self._zlib.compress(data))
        else:
            self._raw.write(data)

    def write(self, values: Mapping[str, object]) -> None:
        chunks = self.writer.frame(values)
        size = sum(map(len, chunks))
        try:
            if self._gzip is None and self._zlib is None:
                raw = self._raw
                for chunk in chunks:
                    raw.write(chunk)
            else:
                for chunk in chunks:
                    self._out(chunk)
        except OSError as err:
            raise WriteError(f"{self.final}: write failed: {err.strerror}") from None
        if self._index is not None:
            self._index.append(f"{self._offset} {size}\n")
        self._offset += size
        self.bytes_written += size
        self.num_records += 1

    def commit(self, before_publish: Callable[[int, str, list[str]], None] | None = None) -> tuple[int, str, list[str]]:
        """Publish the shard under its final name; returns (bytes, sha256, extra files beside it, relative).

        before_publish(bytes, sha256, extra files) runs when the shard is complete but not yet under its
        final name (the run records it in its manifest there); if it fails, nothing is published.
        """
        extra = []
        try:
            footer = self.writer.footer()
            if footer:
                self._out(footer)
            if self._gzip is not None:
                self._gzip.close()
            if self._zlib is not None:
                self._raw.write(self._zlib.flush())
            self._raw.flush()
            if self._index is not None:
                # The index first: a published shard always has its index beside it.
                storage.write_bytes(self.final + ".idx", "".join(self._index).encode(), root=self.output_dir)
                extra.append(self.path + ".idx")
            if before_publish is not None:
                before_publish(self._raw.size, self._raw.sha256.hexdigest(), extra)
            self._file.commit()
        except OSError as err:
            self.abort()
            raise WriteError(f"{self.final}: cannot finish shard: {err.strerror or err}") from None
        except BaseException:
            self.abort()
            raise
        return self._raw.size, self._raw.sha256.hexdigest(), extra

    def abort(self) -> None:
        self._file.abort()

    def __enter__(self) -> "ShardSink":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
