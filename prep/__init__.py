"""prep: declarative conversion of image folders into sharded training records."""

__version__ = "0.1.0"
