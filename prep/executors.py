"""Executors: run the planned shard tasks, in this process or in a pool of worker processes."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from prep.errors import ConfigError, PrepError


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group: the parent decides what happens, workers just stop when told.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # And a worker dies with its parent (even a SIGKILLed one) instead of writing on as an orphan.
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


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
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init)
        finished = False
        try:
            pending = {pool.submit(fn, job, task) for task in tasks}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
            finished = True
        except BrokenProcessPool:
            raise PrepError("a worker process died while writing shards (killed, or out of memory); rerun with resume=true to finish") from None
        finally:
            if not finished:
                # Stop at once: the workers' unfinished shards are only .partial files, removed by the caller.
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
