"""LocalExecutor: shard tasks in this process, or in worker processes that prep forks and owns.

prep forks its workers itself, with public APIs only (a fork-context Process per worker and a pipe to each),
instead of using the standard library's process pool (concurrent.futures): stopping that pool meant reaching
into its private attributes, which any Python release may change, and its shared result queue and reader
thread could hang the stop on a result a dying worker had half sent. Here every worker has its own pipe, and
only that worker holds the far end, so a worker that dies (killed, out of memory, halfway through a large
result) is an end of file on its own pipe and the run stops at once. Stopping is prep's logic too: tell idle
workers to leave, and end busy ones with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait

from prep.core import interrupts
from prep.core.errors import ConfigError, PrepError
from prep.executors.base import Executor

log = logging.getLogger(__name__)

DIED = "a worker process died while writing shards (killed, or out of memory); rerun with resume=true to finish"
_LEAVE = b""  # to an idle worker: exit (a task is never empty)


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
    # Read past the lock: a worker killed while holding it would otherwise stop this thread, and the map with it.
    values = _processed.get_obj()
    while not stop.wait(0.25):
        progress(values[0], values[1])


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group: the parent decides what happens, workers just stop when told.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Told = SIGTERM, and it must end the worker outright. With the parent's handler (SIGTERM -> KeyboardInterrupt)
    # the worker would only fail the current shard, report it, and wait for the next task.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # And a worker dies with its parent (even a SIGKILLed one) instead of writing on as an orphan.
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass
    interrupts.unblock()  # forked with them blocked (interrupts.deferred): a Ctrl-C that came meanwhile is ignored now


class _Worker:
    def __init__(self, process, conn: Connection) -> None:
        self.process = process
        self.conn = conn  # the driver's end of the worker's pipe: tasks out, results back


class LocalExecutor(Executor):
    """Shard tasks in `workers` forked worker processes (default: one per core); workers=1 runs in-process."""

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"executor.workers={workers}: must be a positive number of processes, or null for one per core")
        self.workers = workers or _cores()
        self._pool: list[_Worker] = []  # the started workers, kept for the run
        self._counter = None

    def start(self) -> None:
        """Fork the worker processes now, while this process is small: workers forked after planning would
        each start as a copy of the driver holding the whole item table."""
        if self.workers > 1 and not self._pool:
            self._counter = _counter()
            _fork(self.workers, self._counter, self._pool)  # into self._pool as they come: close() finds them all

    def close(self, abort: bool = False) -> None:
        """Stop the workers: when they are idle, by telling them; after an error or an interrupt (abort), at once,
        since a worker cut short while it started or worked may never answer."""
        pool, self._pool, self._counter = self._pool, [], None
        if not pool:
            return
        with interrupts.held():
            _stop(pool, abort)

    def worker_pids(self) -> list[int]:
        """The started workers' process ids (none before start, or once closed)."""
        return [worker.process.pid for worker in self._pool]

    def map(self, fn: Callable, job, tasks: Sequence, progress: Callable[[int], None] | None = None) -> Iterator:
        """Yield fn(job, task) for every task, in order of completion; the first error stops the rest.

        progress, if given, is called from a watcher thread with the images processed so far and their bytes.
        """
        global _processed
        if self._counter is not None:
            self._counter.get_obj()[:] = [0, 0]  # past the lock, which a worker killed in an earlier map may hold
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
        started = bool(self._pool)
        pool = self._pool if started else []
        finished = False
        try:
            if not started:
                _fork(workers, _processed, pool)
            yield from _run(pool, fn, job, tasks)
            finished = True
        finally:
            if not finished:
                # Stop at once: the workers' unfinished shards are only .partial files, removed by the caller.
                with interrupts.held():  # a second Ctrl-C must not cut this short
                    _stop(pool, abort=True)
                if started:
                    self._pool, self._counter = [], None
            elif not started:
                _stop(pool, abort=False)


def _fork(count: int, counter, into: list[_Worker]) -> None:
    """Fork `count` workers into `into`. A Ctrl-C arriving during the forks would be raised inside a fork hook,
    where Python drops it, or kill a worker before it ignores Ctrl-C: it waits until they are made, and is then
    taken by this process alone."""
    context = multiprocessing.get_context("fork")  # workers start at once with the parent's imports
    with interrupts.deferred():
        for i in range(count):
            mine, theirs = context.Pipe()
            # This process's ends (the earlier workers', and this one's) are closed in the worker: it keeps its own end only.
            others = [w.conn for w in into] + [mine]
            # daemon: a driver that exits without close() ends them at exit instead of waiting on them forever.
            process = context.Process(target=_serve, args=(theirs, counter, others), name=f"prep-worker-{i + 1}", daemon=True)
            try:
                process.start()
            except BaseException:
                mine.close()
                raise
            finally:
                # Only the worker may hold its end: when it dies, this process then reads an end of file there
                # instead of waiting forever for the rest of a result.
                theirs.close()
            into.append(_Worker(process, mine))


def _serve(conn: Connection, counter, inherited: list[Connection]) -> None:
    """A worker: run the tasks the driver sends, one at a time, and send back each one's outcome."""
    global _processed
    _worker_init()
    for other in inherited:
        other.close()
    _processed = counter
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):  # the driver is gone
            return
        if message == _LEAVE:
            return
        conn.send_bytes(_outcome(message))


def _outcome(message: bytes) -> bytes:
    try:
        fn, job, task = pickle.loads(message)
        return pickle.dumps(("ok", fn(job, task), None), pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # an unpicklable result too
        error = exc
    trace = "".join(traceback.format_exception(error))
    try:
        reply = pickle.dumps(("error", error, trace), pickle.HIGHEST_PROTOCOL)
        pickle.loads(reply)  # the driver must be able to make it again, or it would see no error at all
        return reply
    except BaseException:
        try:
            text = f"{type(error).__name__}: {error}"
        except BaseException:
            text = type(error).__name__
        return pickle.dumps(("error", PrepError(text), trace), pickle.HIGHEST_PROTOCOL)


class _RemoteTraceback(Exception):
    """Where a task failed in its worker: the cause of the error raised here."""

    def __init__(self, trace: str) -> None:
        super().__init__(trace)
        self.trace = trace

    def __str__(self) -> str:
        return f'\n"""\n{self.trace}"""'


def _run(pool: list[_Worker], fn: Callable, job, tasks: Sequence) -> Iterator:
    """Hand each idle worker the next task and yield the results as they come; the first error, or a worker's
    death, is raised here."""
    todo = deque(tasks)
    idle = deque(pool)
    busy: dict[Connection, _Worker] = {}

    def feed() -> None:
        while idle and todo:
            worker = idle.popleft()
            try:
                _send(worker.conn, pickle.dumps((fn, job, todo.popleft()), pickle.HIGHEST_PROTOCOL))
            except OSError:  # died while idle
                raise PrepError(DIED) from None
            busy[worker.conn] = worker

    feed()
    while busy:
        for conn in wait(list(busy)):
            worker = busy.pop(conn)
            try:
                kind, value, trace = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):  # dead before or while sending: its pipe ends, so this never waits on it
                raise PrepError(DIED) from None
            if kind == "error":
                raise value from _RemoteTraceback(trace)
            idle.append(worker)
            feed()  # before yielding: the worker has its next task while the caller handles this result
            yield value


def _send(conn: Connection, data: bytes) -> None:
    """Send with SIGPIPE blocked: a worker that is gone makes the write fail (an OSError) instead of killing this
    process. Python ignores SIGPIPE, but a program (or a tool's cli, as prep-verify's for `| head`) may have
    restored the default."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
    try:
        conn.send_bytes(data)
    finally:
        if signal.SIGPIPE not in before:
            signal.sigtimedwait({signal.SIGPIPE}, 0)  # the failed write's own SIGPIPE, taken before it could act
            signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _end(pool: list[_Worker]) -> None:
    """End the workers now: SIGTERM, then SIGKILL for any still alive a moment later. A worker may not die of
    SIGTERM (not yet set up, so with SIGTERM still blocked from its fork, or with SIGTERM blocked by a library)."""
    for worker in pool:
        worker.process.terminate()
    deadline = time.monotonic() + 2.0
    for worker in pool:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.exitcode is None:
            worker.process.kill()
            worker.process.join(5.0)


def _stop(pool: list[_Worker], abort: bool) -> None:
    """Stop the workers: idle ones are told to leave and given a moment; busy ones (abort), and any that did not
    leave, are ended. Nothing here reads from a worker, so a worker gone in any state cannot make it wait."""
    if not abort:
        for worker in pool:
            try:
                _send(worker.conn, _LEAVE)
            except OSError:  # already gone
                pass
        deadline = time.monotonic() + 5.0
        for worker in pool:
            worker.process.join(max(0.0, deadline - time.monotonic()))
    _end([worker for worker in pool if worker.process.exitcode is None])
    for worker in pool:
        worker.conn.close()
