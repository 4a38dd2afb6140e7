"""What the steps of a run are handed: the six stages, and the run's own settings (the top-level config keys)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prep.encoders.base import Encoder
from prep.executors.base import Executor
from prep.labels.base import LabelFormat
from prep.sources.base import Source
from prep.split.base import Splitter
from prep.writers.base import RecordWriter


@dataclass(frozen=True)
class Stages:
    """One stage per config group, built by prep/app.py from the composed config (or by a test, directly)."""

    source: Source
    labels: LabelFormat
    splitter: Splitter
    encoder: Encoder
    writer: RecordWriter
    executor: Executor


@dataclass(frozen=True)
class Settings:
    """The run's top-level settings (conf/config.yaml), as convert() takes them."""

    name: str
    output_dir: str
    limit: int | None = None
    on_error: str = "skip"
    max_skipped: object = None  # a count, a fraction below 1, or None (checked by skips.skip_limit)
    overwrite: bool = False
    resume: bool = False
    verify: bool = False
    progress: bool = True
    dry_run: bool = False
    run_info: dict = field(default_factory=dict)  # overrides and config_fingerprint, for summary.json
    # called once the run holds output_dir: the CLI saves .hydra/ and prep.log there only then
    on_claim: Callable[[], None] | None = None

    @property
    def fingerprint(self) -> str:
        return self.run_info.get("config_fingerprint", "")
