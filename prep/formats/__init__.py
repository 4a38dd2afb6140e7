"""Byte-level record formats: protobuf wire encoding, TFRecord framing, OFRecord framing."""
