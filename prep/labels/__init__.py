"""Label formats, one module per conf/labels choice: read a label file (or the folder layout) into
LabelEntry rows, in file order. The interface every format meets is prep.labels.base.LabelFormat."""

from prep.labels.base import KINDS, LabelFormat, check_kind
from prep.labels.csv import CsvLabels
from prep.labels.embedded import EmbeddedLabels
from prep.labels.jsonl import JsonlLabels
from prep.labels.space import SpaceLabels
from prep.labels.subdirs import SubdirLabels

__all__ = ["KINDS", "CsvLabels", "EmbeddedLabels", "JsonlLabels", "LabelFormat", "SpaceLabels", "SubdirLabels", "check_kind"]
