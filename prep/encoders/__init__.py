"""Encoders, one module per kind of conf/encoder choice: turn what a source read (file bytes or an RGB pixel
array) into the bytes a record stores. The interface every encoder meets is prep.encoders.base.Encoder."""

from prep.encoders.base import Encoder
from prep.encoders.image import ImageEncoder
from prep.encoders.passthrough import PassthroughEncoder
from prep.encoders.pixels import DEFAULT_MAX_PIXELS, decode
from prep.encoders.raw import RawEncoder

__all__ = ["DEFAULT_MAX_PIXELS", "Encoder", "ImageEncoder", "PassthroughEncoder", "RawEncoder", "decode"]
