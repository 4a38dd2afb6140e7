"""Executors: run the planned shard tasks, in this process or in a pool of worker processes."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

from prep.errors import ConfigError


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class LocalExecutor:
    """Shard tasks in a process pool of `workers` (default: one per core); workers=1 runs in-process."""

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"executor.workers={workers}: must be a positive number of processes, or null for one per core")
        self.workers = workers or _cores()

    def map(self, fn: Callable, job, tasks: Sequence) -> Iterator:
        """Yield fn(job, task) for every task, in order of completion; the first error stops the rest."""
        workers = min(self.workers, len(tasks))
        if workers <= 1:
            for task in tasks:
                yield fn(job, task)
            return
        # fork: workers start at once with the parent's imports; tasks carry everything else they need.
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
        try:
            pending = {pool.submit(fn, job, task) for task in tasks}
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    yield future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
