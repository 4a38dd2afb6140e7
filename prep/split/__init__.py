"""Splitters: assign every item of the table to a named split (train / validation / test), reproducibly.
One module per choice in conf/split/."""

from prep.split.base import SPLIT_NAMES, Splitter, rank
from prep.split.column import ColumnSplit
from prep.split.folders import FolderSplit
from prep.split.none import NoSplit
from prep.split.stratified import StratifiedSplit, split_counts

_split_counts = split_counts  # the name earlier code used

__all__ = ["SPLIT_NAMES", "Splitter", "rank", "NoSplit", "StratifiedSplit", "FolderSplit", "ColumnSplit"]
