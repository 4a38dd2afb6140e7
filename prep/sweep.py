"""The sweep table: one row per job of a Hydra multirun, written when the sweep ends (a Hydra callback).
The table itself is made by prep/tools/sweeps.py, which prep-readbench uses too."""

from __future__ import annotations

import logging
import os

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from prep.tools.sweeps import SWEEP_CSV, collect, common_overrides, write_table

log = logging.getLogger(__name__)
failed_jobs = 0  # set when a sweep ends: the command then exits non-zero


class SweepSummary(Callback):
    """Hydra callback: after a multirun, tabulate every job's summary.json in the sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = config.hydra.sweep.dir
        if not os.path.isdir(sweep_dir):
            return
        global failed_jobs
        rows = collect(sweep_dir)
        failed_jobs = sum(1 for row in rows if row["status"] != "ok")
        table = write_table(sweep_dir, rows)
        common = " ".join(common_overrides(sweep_dir)) or "none"
        log.info("sweep of %d jobs -> %s (overrides shared by all jobs: %s)\n%s", len(rows), os.path.join(sweep_dir, SWEEP_CSV), common, table)
