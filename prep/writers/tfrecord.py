"""writer=tfrecord: TFRecord shards of tf.train.Example (framing and CRC-32C written by prep, no TensorFlow)."""

from __future__ import annotations

from collections.abc import Mapping

from prep.core.errors import ConfigError
from prep.formats import tfrecord
from prep.writers.base import RecordWriter, join_small_ends
from prep.writers.tfds_metadata import TFDSMetadata


class TFRecordWriter(TFDSMetadata, RecordWriter):
    """TFRecord shards of tf.train.Example; optional gzip/zlib compression and DALI index files; TFDS's
    metadata (dataset_info.json, features.json, class names) beside them, so tfds.builder_from_directory reads them."""

    format = "tfrecord"
    file_format = "tfrecord"  # TFDS's FileFormat
    types = tuple(tfrecord.KINDS)

    def __init__(
        self,
        shard_size: int | None = 1000,
        num_shards: int | None = None,
        pattern: str = "{dataset}-{split}.tfrecord-{index:05d}-of-{count:05d}",
        features: Mapping[str, str] | None = None,
        compression: str | None = None,
        dali_index: bool = False,
        shard_fill: str = "even",
    ) -> None:
        super().__init__(shard_size, num_shards, pattern, features or {}, shard_fill)
        if compression not in (None, "gzip", "zlib"):
            raise ConfigError(f"writer.compression={compression!r}: choose gzip, zlib or null")
        if compression and dali_index:
            raise ConfigError(
                f"writer.dali_index=true needs uncompressed shards (DALI indexes raw byte offsets), but writer.compression={compression}"
            )
        self.compression = compression
        self.dali_index = dali_index

    def frame(self, values: Mapping[str, object]) -> list[bytes]:
        chunks, size = tfrecord.example_chunks(self.typed(values))
        return join_small_ends(tfrecord.frame_header(size), chunks, tfrecord.payload_footer(chunks))
