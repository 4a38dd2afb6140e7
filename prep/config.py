"""Typed configs for every stage, registered in Hydra's ConfigStore as `schema/<group>` configs that conf/ files extend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING


@dataclass
class ImageDirSourceConf:
    _target_: str = "prep.sources.ImageDirSource"
    image_dir: str = ""
    extension: Optional[str] = None  # appended to label-file names that have none (CIFAR-10's bare ids)
    max_image_bytes: int = II("max_image_bytes")


@dataclass
class DigitsSourceConf:
    _target_: str = "prep.sources.DigitsSource"


@dataclass
class PixelCsvSourceConf:
    _target_: str = "prep.sources.PixelCsvSource"
    path: str = ""
    shape: List[int] = field(default_factory=lambda: [28, 28])
    label_column: int = 0
    header: bool = False


# labels.kind, on every labels choice: auto | int | name (prep.labels.KINDS). A str checked by the stage's
# constructor, so a wrong value gets prep's own one-line message (OmegaConf 2.3 rejects typing.Literal).
@dataclass
class SpaceLabelsConf:
    _target_: str = "prep.labels.SpaceLabels"
    path: str = ""
    kind: str = "auto"


@dataclass
class JsonlLabelsConf:
    _target_: str = "prep.labels.JsonlLabels"
    path: str = ""
    filename_key: str = "file_name"
    label_key: str = "label"
    kind: str = "auto"


@dataclass
class CsvLabelsConf:
    _target_: str = "prep.labels.CsvLabels"
    path: str = ""
    filename_column: str = "filename"
    label_column: str = "label"
    kind: str = "auto"


@dataclass
class SubdirLabelsConf:
    _target_: str = "prep.labels.SubdirLabels"
    kind: str = "auto"


@dataclass
class EmbeddedLabelsConf:
    _target_: str = "prep.labels.EmbeddedLabels"
    kind: str = "auto"


# split.dedup (none | exact | near), split.dedup_keep (all | first): strs checked by the splitter's constructor.
@dataclass
class NoSplitConf:
    _target_: str = "prep.split.none.NoSplit"
    name: str = "train"
    shuffle: bool = False
    seed: int = 0
    dedup: str = "none"
    dedup_keep: str = "all"
    near_distance: int = 5


@dataclass
class StratifiedSplitConf:
    _target_: str = "prep.split.stratified.StratifiedSplit"
    val: float = 0.1
    test: float = 0.1
    seed: int = 0
    shuffle: bool = True
    dedup: str = "exact"
    dedup_keep: str = "all"
    near_distance: int = 5
    group_by: Optional[str] = None


@dataclass
class FolderSplitConf:
    _target_: str = "prep.split.folders.FolderSplit"
    strict: bool = False
    shuffle: bool = True
    seed: int = 0
    dedup: str = "exact"
    dedup_keep: str = "all"
    near_distance: int = 5


@dataclass
class ColumnSplitConf(FolderSplitConf):
    _target_: str = "prep.split.column.ColumnSplit"
    column: str = "split"


@dataclass
class PassthroughEncoderConf:
    _target_: str = "prep.encoders.PassthroughEncoder"
    convert_to: Optional[str] = None
    quality: int = 95
    exif: str = "apply"  # apply | ignore (prep.encoders.EXIF_MODES)
    max_pixels: int = II("max_pixels")


@dataclass
class ImageEncoderConf:
    _target_: str = "prep.encoders.ImageEncoder"
    format: str = "png"
    quality: int = 95
    png_compression: int = 3
    resize: Optional[int] = None
    channels: Optional[int] = None
    exif: str = "apply"
    reduce: str = "dct"  # dct | none (prep.encoders.REDUCE_MODES)
    max_pixels: int = II("max_pixels")


@dataclass
class RawEncoderConf:
    _target_: str = "prep.encoders.RawEncoder"
    resize: Optional[int] = None
    channels: Optional[int] = None
    exif: str = "apply"
    reduce: str = "dct"  # dct | none (prep.encoders.REDUCE_MODES)
    max_pixels: int = II("max_pixels")


@dataclass
class TFRecordWriterConf:
    _target_: str = "prep.writers.tfrecord.TFRecordWriter"
    shard_size: Optional[int] = 1000
    num_shards: Optional[int] = None
    shard_fill: str = "even"
    pattern: str = "{dataset}-{split}.tfrecord-{index:05d}-of-{count:05d}"
    features: Any = II("features")
    compression: Optional[str] = None
    dali_index: bool = False


@dataclass
class OFRecordWriterConf:
    _target_: str = "prep.writers.ofrecord.OFRecordWriter"
    shard_size: Optional[int] = None
    num_shards: Optional[int] = 5
    shard_fill: str = "even"
    pattern: str = "{split}/part-{index}"
    features: Any = II("features")


@dataclass
class ArrayRecordWriterConf:
    _target_: str = "prep.writers.arrayrecord.ArrayRecordWriter"
    shard_size: Optional[int] = 1000
    num_shards: Optional[int] = None
    shard_fill: str = "even"
    pattern: str = "{dataset}-{split}.array_record-{index:05d}-of-{count:05d}"
    features: Any = II("features")


@dataclass
class WebDatasetWriterConf:
    _target_: str = "prep.writers.webdataset.WebDatasetWriter"
    shard_size: Optional[int] = 1000
    num_shards: Optional[int] = None
    shard_fill: str = "even"
    pattern: str = "{dataset}-{split}-{index:06d}.tar"
    wids_index: bool = True


@dataclass
class LocalExecutorConf:
    _target_: str = "prep.executors.LocalExecutor"
    workers: Optional[int] = None


@dataclass
class RayExecutorConf:
    _target_: str = "prep.executors.RayExecutor"
    address: Optional[str] = None
    num_cpus_per_task: float = 1
    max_retries: int = 2
    num_cpus: Optional[int] = None
    scheduling_strategy: str = "SPREAD"
    shared_filesystem: bool = False
    runtime_env: Any = None  # a mapping; Any, as OmegaConf 2.3 cannot override a null Optional[Dict] with one


@dataclass
class PrepConf:
    """The top-level keys; the stage groups are filled in by conf/config.yaml's defaults list."""

    name: str = MISSING  # the dataset name: run directory, shard names, summary
    output_dir: str = II("hydra:runtime.output_dir")
    limit: Optional[int] = None
    on_error: str = "skip"
    max_skipped: Any = None
    overwrite: bool = False
    resume: bool = False
    verify: bool = False
    dry_run: bool = False
    max_pixels: int = 20_000 * 20_000
    max_image_bytes: int = 256 << 20
    progress: bool = True
    features: Any = field(default_factory=dict)
    source: Any = MISSING
    labels: Any = MISSING
    split: Any = MISSING
    encoder: Any = MISSING
    writer: Any = MISSING
    executor: Any = MISSING


SCHEMAS = {
    "source": {"image_dir": ImageDirSourceConf, "digits": DigitsSourceConf, "pixel_csv": PixelCsvSourceConf},
    "labels": {
        "space": SpaceLabelsConf,
        "jsonl": JsonlLabelsConf,
        "csv": CsvLabelsConf,
        "subdirs": SubdirLabelsConf,
        "embedded": EmbeddedLabelsConf,
    },
    "split": {"none": NoSplitConf, "stratified": StratifiedSplitConf, "folders": FolderSplitConf, "column": ColumnSplitConf},
    "encoder": {"passthrough": PassthroughEncoderConf, "image": ImageEncoderConf, "raw": RawEncoderConf},
    "writer": {"tfrecord": TFRecordWriterConf, "ofrecord": OFRecordWriterConf, "arrayrecord": ArrayRecordWriterConf, "webdataset": WebDatasetWriterConf},
    "executor": {"local": LocalExecutorConf, "ray": RayExecutorConf},
}

# Keys that say where and how a run happens, not what it writes: left out of the config fingerprint.
RUNTIME_KEYS = ("output_dir", "overwrite", "resume", "verify", "progress", "executor", "dry_run")


# The terminal's log format. The run's log file (prep.log) is written by prep itself, only once the run
# holds its output folder (prep/run/logfile.py), so Hydra's own file handler is not used. In the ConfigStore,
# not conf/, so that a rerun from a saved .hydra/config.yaml finds it too.
JOB_LOGGING = {
    "version": 1,
    "formatters": {"console": {"format": "[prep] %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "console", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["console"]},
    "disable_existing_loggers": False,
}


def conf_dir() -> str:
    """prep's own config folder: prep/conf/ in an installed wheel (the build puts the repository's conf/
    there), the repository's top-level conf/ in a checkout (editable install, or prep on PYTHONPATH)."""
    import os

    package = os.path.dirname(os.path.abspath(__file__))
    candidates = (os.path.join(package, "conf"), os.path.join(os.path.dirname(package), "conf"))
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "config.yaml")):
            return candidate
    raise FileNotFoundError(f"prep's configs (config.yaml) are in neither {candidates[0]} nor {candidates[1]}: reinstall prep")


def folder_name(value: object) -> str:
    import re

    text = re.sub(r"[^\w.-]+", "_", str(value)).strip("._") or "_"
    return text[:100]


def register() -> None:
    """Schemas live in their own `schema/<group>` groups, so `--help` lists only the real choices."""
    import os

    from omegaconf import OmegaConf

    # ${pid:} in the default run folder: two runs started in the same second get two folders.
    if not OmegaConf.has_resolver("pid"):
        OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True)
    # ${folder_name:${name}} in the default run folder: whatever `name` holds (`..`, `/`, 300 characters),
    # the folder Hydra creates stays one plain folder under outputs/ (prep then refuses such a name itself).
    if not OmegaConf.has_resolver("folder_name"):
        OmegaConf.register_new_resolver("folder_name", folder_name)
    store = ConfigStore.instance()
    store.store(group="hydra/job_logging", name="prep", node=JOB_LOGGING, provider="prep")
    store.store(group="schema/config", name="prep", node=PrepConf)
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            store.store(group=f"schema/{group}", name=name, node=schema)
