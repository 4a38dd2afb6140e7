"""LocalExecutor: shard tasks in this process or a pool of forked worker processes."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from prep.core import interrupts
from prep.core.errors import ConfigError, PrepError
from prep.executors.base import Executor

log = logging.getLogger(__name__)


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Images processed by shard tasks on this machine: a counter shared with forked workers, read by the
# driver's progress bar. None where nobody reads it (a Ray worker).
_processed = None


def count_processed(n: int, nbytes: int = 0) -> None:
    """Shard tasks call this every few images (and the bytes they wrote), so the progress bar moves within
    a shard, not per shard."""
    if _processed is not None:
        with _processed.get_lock():
            _processed[0] += n
            _processed[1] += nbytes


def _counter():
    return multiprocessing.get_context("fork").Array("q", 2)  # images, bytes; made before the fork: workers share it


def _watch(progress: Callable[[int, int], None] | None, stop: threading.Event) -> None:
    while not stop.wait(0.25):
        progress(_processed[0], _processed[1])


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group: the parent decides what happens, workers just stop when told.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Told = SIGTERM, and it must end the worker outright. With the parent's handler (SIGTERM -> KeyboardInterrupt)
    # the pool would only fail the current shard and hand the worker the next queued one.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # And a worker dies with its parent (even a SIGKILLed one) instead of writing on as an orphan.
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass
    interrupts.unblock()  # forked with them blocked (interrupts.deferred): a Ctrl-C that came meanwhile is ignored now


class LocalExecutor(Executor):
    """Shard tasks in a process pool of `workers` (default: one per core); workers=1 runs in-process."""

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"executor.workers={workers}: must be a positive number of processes, or null for one per core")
        self.workers = workers or _cores()
        self._pool: ProcessPoolExecutor | None = None
        self._counter = None

    def start(self) -> None:
        """Fork the worker processes now, while this process is small: workers forked after planning would
        each start as a copy of the driver holding the whole item table."""
        if self.workers > 1 and self._pool is None:
            self._counter = _counter()
            self._pool = self._new_pool(self.workers)
            _fork_workers(self._pool)

    def close(self, abort: bool = False) -> None:
        """Stop the workers: when they are idle, by telling them; after an error or an interrupt (abort), at once,
        since a pool cut short while it started or worked may never answer."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with interrupts.held():
            _stop(pool, abort)

    @staticmethod
    def _new_pool(workers: int) -> ProcessPoolExecutor:
        # fork: workers start at once with the parent's imports; tasks carry everything else they need.
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init)

    def map(self, fn: Callable, job, tasks: Sequence, progress: Callable[[int], None] | None = None) -> Iterator:
        """Yield fn(job, task) for every task, in order of completion; the first error stops the rest.

        progress, if given, is called from a watcher thread with the images processed so far and their bytes.
        """
        global _processed
        if self._counter is not None:
            self._counter[0] = self._counter[1] = 0
            _processed = self._counter
        else:
            _processed = _counter()
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(progress, stop), daemon=True) if progress else None
        if watcher:
            watcher.start()
        try:
            yield from self._map(fn, job, tasks)
        finally:
            stop.set()
            if watcher:
                watcher.join()
            _processed = None

    def _map(self, fn: Callable, job, tasks: Sequence) -> Iterator:
        workers = min(self.workers, len(tasks))
        if workers <= 1:
            for task in tasks:
                yield fn(job, task)
            return
        pool = self._pool or self._new_pool(workers)
        finished = False
        try:
            if pool is not self._pool:
                _fork_workers(pool)
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
                with interrupts.held():  # a second Ctrl-C must not cut this short
                    _stop(pool, abort=True)
                self._pool = None
            elif pool is not self._pool:
                _stop(pool, abort=False)


def _fork_workers(pool: ProcessPoolExecutor) -> None:
    """Fork the pool's workers (a fork pool forks them all at its first task). A Ctrl-C arriving during the
    forks would be raised inside a fork hook, where Python drops it, or kill a worker before it ignores Ctrl-C:
    it waits until they are made, and is then taken by this process alone."""
    with interrupts.deferred():
        pool.submit(os.getpid)


def _end(pool: ProcessPoolExecutor) -> None:
    """End a pool's workers now: SIGTERM, then SIGKILL for any still alive a moment later. A worker may not die
    of SIGTERM (not yet set up, so with the parent's handler, or with SIGTERM blocked), and one left waiting on
    the task queue's lock, which a killed worker held, would make the pool's shutdown wait forever."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + 2.0
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(5.0)
    # A worker ended halfway through sending its result (a content scan's entries are large) leaves the pool's
    # reader waiting for the rest, forever: this process holds the pipe's other end too, so the reader never
    # sees its end. Closing it here ends the wait (the pool takes itself for broken, and shuts down).
    result_queue = getattr(pool, "_result_queue", None)
    writer = getattr(result_queue, "_writer", None)
    if writer is not None and not any(process.is_alive() for process in processes):
        try:
            writer.close()
        except OSError:
            pass


def _stop(pool: ProcessPoolExecutor, abort: bool) -> None:
    """Shut the pool down, its workers ended first when abort, with SIGPIPE ignored meanwhile: the pool's
    threads write to the queues of workers that are gone. Python ignores SIGPIPE, but a program (or a tool's
    cli, as prep-verify's for `| head`) may have restored the default, which would kill this process there."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN) if main else None
    try:
        if abort:
            _end(pool)
        pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if main:
            signal.signal(signal.SIGPIPE, previous)
