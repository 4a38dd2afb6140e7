"""Bytes on disk, importing nothing of prep but its errors: protobuf wire encoding (protowire), TFRecord and
OFRecord framing, tar and WebDataset samples, ArrayRecord files, and the image headers (images/)."""
