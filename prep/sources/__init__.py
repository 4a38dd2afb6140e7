"""Sources, one module per conf/source choice: where images come from and how a shard task reads one.
The interface every source meets is prep.sources.base.Source."""

from prep.sources.base import LabelEntry, Source, clean
from prep.sources.digits import DigitsSource
from prep.sources.image_dir import ImageDirSource
from prep.sources.lines import read_lines
from prep.sources.pixel_csv import PixelCsvSource
from prep.sources.walk import IMAGE_EXTENSIONS, is_image_name

__all__ = ["DigitsSource", "IMAGE_EXTENSIONS", "ImageDirSource", "LabelEntry", "PixelCsvSource", "Source", "clean", "is_image_name", "read_lines"]
