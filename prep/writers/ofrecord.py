"""writer=ofrecord: OneFlow OFRecord part files (int64 length + serialized OFRecord, no checksum)."""

from __future__ import annotations

from collections.abc import Mapping

from prep.formats import ofrecord
from prep.writers.base import RecordWriter, join_small_ends


class OFRecordWriter(RecordWriter):
    """OneFlow OFRecord part files (`part-0`, ...), one folder per split."""

    format = "ofrecord"
    types = tuple(ofrecord.KINDS)

    def __init__(
        self,
        shard_size: int | None = None,
        num_shards: int | None = 5,
        pattern: str = "{split}/part-{index}",
        features: Mapping[str, str] | None = None,
        shard_fill: str = "even",
    ) -> None:
        super().__init__(shard_size, num_shards, pattern, features or {}, shard_fill)

    def frame(self, values: Mapping[str, object]) -> list[bytes]:
        chunks, size = ofrecord.record_chunks(self.typed(values))
        return join_small_ends(ofrecord.frame_header(size), chunks, b"")
