"""Writers, one module per format, mirroring conf/writer/*.yaml: tfrecord, ofrecord, arrayrecord, webdataset.

Each is a RecordWriter (base.py): the features a record holds, sharding and shard names are shared; a
format fills in how a record is framed, what ends a shard, and which run-level files it writes.
"""

from prep.writers.arrayrecord import ArrayRecordWriter
from prep.writers.base import EXACT_INTEGERS, FIELD_TYPES, FILLS, RecordWriter, record_values
from prep.writers.ofrecord import OFRecordWriter
from prep.writers.sink import ShardSink
from prep.writers.tfrecord import TFRecordWriter
from prep.writers.webdataset import WebDatasetWriter

# format name (summary.json's "format") -> writer class
FORMATS = {writer.format: writer for writer in (TFRecordWriter, OFRecordWriter, ArrayRecordWriter, WebDatasetWriter)}

__all__ = [
    "ArrayRecordWriter", "EXACT_INTEGERS", "FIELD_TYPES", "FILLS", "FORMATS", "OFRecordWriter", "RecordWriter", "ShardSink",
    "TFRecordWriter", "WebDatasetWriter", "record_values",
]
