"""writer=arrayrecord: ArrayRecord files of serialized tf.train.Example (TFDS's and Grain's random-access
format), written by the array_record package with TFDS's options, and TFDS's metadata beside them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from prep.core import storage
from prep.core.errors import WriteError
from prep.formats import arrayrecord, tfrecord
from prep.writers.base import RecordWriter
from prep.writers.tfds_metadata import TFDSMetadata


class ArrayRecordWriter(TFDSMetadata, RecordWriter):
    """ArrayRecord shards holding exactly the TFRecord writer's Example bytes (same features, same keys)."""

    format = "arrayrecord"
    file_format = "array_record"  # TFDS's FileFormat
    types = tuple(tfrecord.KINDS)

    def __init__(
        self,
        shard_size: int | None = 1000,
        num_shards: int | None = None,
        pattern: str = "{dataset}-{split}.array_record-{index:05d}-of-{count:05d}",
        features: Mapping[str, str] | None = None,
        shard_fill: str = "even",
    ) -> None:
        super().__init__(shard_size, num_shards, pattern, features or {}, shard_fill)
        arrayrecord.module()  # ConfigError now, before anything is written, when array_record is missing

    def frame(self, values: Mapping[str, object]) -> list[bytes]:
        """One record's bytes: the serialized tf.train.Example (ArrayRecord does its own framing)."""
        chunks, _ = tfrecord.example_chunks(self.typed(values))
        return list(chunks)

    def open(self, output_dir: str, path: str) -> "ArrayRecordSink":
        return ArrayRecordSink(self, output_dir, path)


class ArrayRecordSink:
    """One ArrayRecord shard, as safe as ShardSink: written under a temporary name (storage.AtomicFile's:
    `<shard>.partial` beside it, or a local file uploaded once for s3://), hashed when complete, recorded by
    `before_publish`, then renamed (or uploaded); abort removes the temporary file."""

    def __init__(self, writer: ArrayRecordWriter, output_dir: str, path: str) -> None:
        self.writer = writer
        self.path = path
        self.final = storage.join(output_dir, path)
        self.num_records = 0
        self.bytes_written = 0  # record bytes, for the progress bar
        try:
            self._file = storage.AtomicFile(self.final, root=output_dir)
        except OSError as err:
            raise WriteError(f"{self.final}: cannot create shard: {err.strerror}") from None
        # The array_record library writes the file itself, by name: it is handed a name that leads to exactly
        # the staging file prep created (never through a link planted at `<shard>.partial`).
        self._temp = self._file.local_name
        self._records = arrayrecord.module().ArrayRecordWriter(self._temp, arrayrecord.WRITER_OPTIONS)
        if not self._records.ok():
            self.abort()
            raise WriteError(f"{self.final}: cannot create shard")

    def write(self, values: Mapping[str, object]) -> None:
        data = b"".join(self.writer.frame(values))
        try:
            self._records.write(data)
        except RuntimeError as err:
            raise WriteError(f"{self.final}: write failed: {err}") from None
        self.bytes_written += len(data)
        self.num_records += 1

    def commit(self, before_publish: Callable[[int, str, list[str]], None] | None = None) -> tuple[int, str, list[str]]:
        """Publish the shard under its final name; returns (bytes, sha256, extra files)."""
        try:
            self._records.close()
            sha256, size = hashlib.sha256(), 0
            with open(self._temp, "rb") as f:
                while block := f.read(1 << 20):
                    sha256.update(block)
                    size += len(block)
            if before_publish is not None:
                before_publish(size, sha256.hexdigest(), [])
            self._file.commit()
        except (OSError, RuntimeError) as err:
            self.abort()
            raise WriteError(f"{self.final}: cannot finish shard: {getattr(err, 'strerror', None) or err}") from None
        except BaseException:
            self.abort()
            raise
        return size, sha256.hexdigest(), []

    def abort(self) -> None:
        try:
            if self._records.is_open():
                self._records.close()
        except (AttributeError, RuntimeError):
            pass
        self._file.abort()

    def __enter__(self) -> "ArrayRecordSink":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
