"""The encoder interface: what the pipeline, the content scan and the shard tasks ask of an encoder.

An encoder subclasses Encoder and fills in `describe` and `encode`; the rest has defaults. Shard tasks
pickle encoders to the workers, so an encoder holds plain settings (no open files, no locks).
"""

from __future__ import annotations

from prep.core.values import Encoded, Payload
from prep.encoders.pixels import DEFAULT_MAX_PIXELS


class Encoder:
    # The decompression-bomb guard: width x height above this is a skipped image. The content scan, verify=true
    # and the report use the run's own value, so a run allowed larger images also checks them.
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Whether encoding decodes or encodes pixels (CPU work that releases the GIL): a shard task then encodes on
    # as many threads as the executor has workers; a pass-through copy is bound by reading and gains nothing.
    cpu_bound: bool = False
    # Whether the stored bytes say nothing of their shape (raw pixels): a record must then store height and
    # width beside them, or every image must have one shape, else no reader can rebuild the image.
    needs_shape: bool = False

    def check(self, source) -> None:
        """Refuse, with a ConfigError before anything is read, a source this encoder cannot take (a pixel-array
        source for a pass-through encoder)."""

    def describe(self) -> dict:
        """summary.json's `encoder`: the settings that decide the stored bytes."""
        raise NotImplementedError

    def encode(self, payload: Payload) -> Encoded:
        """The stored bytes and the facts a record holds about them; EncodeError for an image that cannot be
        used (the run skips it or stops, per on_error)."""
        raise NotImplementedError
