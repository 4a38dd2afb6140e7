"""Executors: run the planned shard tasks, in this process or in a pool of worker processes."""

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

from prep import interrupts, storage
from prep.errors import ConfigError, PrepError

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


class LocalExecutor:
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


def _ray_task(fn: Callable, job, task):
    import ray

    # Which node ran the task travels beside the result, never inside it: shards and summary.json stay
    # byte-identical to executor=local, and the driver's log says how the work spread.
    return ray.get_runtime_context().get_node_id(), fn(job, task)


# Ray's scheduling strategies prep offers: SPREAD hands shard tasks to as many nodes as have a free CPU (their
# reads and uploads then use every node's network); DEFAULT packs them onto few nodes first.
SCHEDULING = ("SPREAD", "DEFAULT")


class RayExecutor:
    """Shard tasks as Ray tasks: on a cluster (`address`: auto, host:6379, ray://host:10001) or, unset, a new
    local Ray instance.

    Planning stays on the driver; each task gets only its shard's items and the stages, reads its own inputs,
    writes its own shard and returns its stats. Failed tasks are retried `max_retries` times. On a cluster of
    more than one node every input and the output must be reachable from every node: object storage, or a
    filesystem mounted at the same path everywhere (`shared_filesystem=true` says so).
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus_per_task: float = 1,
        max_retries: int = 2,
        num_cpus: int | None = None,
        scheduling_strategy: str = "SPREAD",
        shared_filesystem: bool = False,
        runtime_env: dict | None = None,
    ) -> None:
        if num_cpus_per_task <= 0:
            raise ConfigError(f"executor.num_cpus_per_task={num_cpus_per_task}: must be positive")
        if max_retries < 0:
            raise ConfigError(f"executor.max_retries={max_retries}: must be 0 or more")
        if scheduling_strategy not in SCHEDULING:
            raise ConfigError(f"executor.scheduling_strategy={scheduling_strategy!r}: choose one of {list(SCHEDULING)}")
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise ConfigError(f"executor.runtime_env={runtime_env!r}: give a mapping (e.g. {{pip: ['prep==1.0']}}) or null")
        self.address = address or None
        if num_cpus is not None and self.address is not None:
            raise ConfigError(f"executor.num_cpus={num_cpus}: only for a local Ray instance (executor.address=null); a cluster has its own CPUs")
        self.num_cpus_per_task = num_cpus_per_task
        self.max_retries = max_retries
        self.num_cpus = num_cpus
        self.scheduling_strategy = scheduling_strategy
        self.shared_filesystem = shared_filesystem
        self.runtime_env = runtime_env or None
        self.workers = max(1, int(num_cpus_per_task))  # encoding threads per task
        self.tasks_per_node: dict[str, int] = {}  # node id -> tasks it ran, for the last map
        self._owned = False  # this executor called ray.init, so it calls ray.shutdown

    def _connect(self):
        try:
            import ray
        except ImportError:
            raise ConfigError("executor=ray needs Ray: pip install 'prep[ray]'") from None
        if not ray.is_initialized():
            # address=null means a new local instance, even where RAY_ADDRESS or a `ray start` on this machine
            # would make plain ray.init() join a cluster (and then refuse num_cpus).
            kwargs = {"address": self.address or "local", "include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
            if self.address is None:
                kwargs["num_cpus"] = self.num_cpus
            if self.runtime_env:
                kwargs["runtime_env"] = self.runtime_env
            self._owned = True  # whatever ray.init gets to start, this run stops
            try:
                # A Ctrl-C while Ray starts is taken once it has: a half-started local instance (its daemons
                # running, not yet known to ray.shutdown) would be left behind.
                with interrupts.deferred(block=False):
                    ray.init(**kwargs)
            except ConnectionError as err:
                self._disconnect(ray)
                raise ConfigError(f"executor.address={self.address}: cannot connect to a Ray cluster: {err}") from None
            except BaseException as err:
                self._disconnect(ray)  # the instance this run started stops with it
                # ray.init sets its own SIGTERM handler (sys.exit) while it connects, in place of prep's: a
                # SIGTERM then is an interrupt like any other (one line, exit 130, the run's cleanup).
                if isinstance(err, SystemExit) and err.code == signal.SIGTERM:
                    raise KeyboardInterrupt from None
                raise
        return ray

    def _disconnect(self, ray) -> None:
        if self._owned:
            ray.shutdown()
            self._owned = False

    def check_paths(self, output_dir: str, inputs: Sequence[str]) -> None:
        """Refuse local paths when the cluster has more than one node: each node would write its shards to
        its own disk (and read inputs that are not there), unless they are one shared filesystem."""
        if self.address is None or self.shared_filesystem:
            return  # a local instance is one node
        local = [("output_dir", output_dir)] if not storage.is_url(output_dir) else []
        local += [("input", path) for path in inputs if not storage.is_url(path)]
        if not local:
            return
        if self.address.startswith("ray://"):
            # Ray Client: this machine is not a node, so even a one-node cluster reads and writes elsewhere.
            where = "it is reached through Ray Client (its nodes are other machines)"
        else:
            ray = self._connect()
            try:
                nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
            finally:
                self._disconnect(ray)  # map connects again; a refused run leaves no connection behind
            if nodes <= 1:
                return
            where = f"it has {nodes} nodes"
        what, path = local[0]
        raise ConfigError(
            f"{what} {path} is a local path, but the Ray cluster at executor.address={self.address}: {where}; "
            "use object storage (s3://, gs://, ...) or set executor.shared_filesystem=true if every node mounts it at the same path"
        )

    def map(self, fn: Callable, job, tasks: Sequence, progress: Callable[[int], None] | None = None) -> Iterator:
        """Yield fn(job, task) for every task as Ray tasks finish; a task that fails after its retries stops the run.

        Progress is reported per finished shard by the caller (tasks run on other machines).
        """
        self.tasks_per_node = {}
        if not tasks:
            return
        ray = self._connect()
        pending = []
        try:
            remote = ray.remote(_ray_task).options(
                num_cpus=self.num_cpus_per_task, max_retries=self.max_retries, retry_exceptions=True, scheduling_strategy=self.scheduling_strategy,
            )
            job_ref = ray.put(job)
            refs = {remote.remote(fn, job_ref, task): task for task in tasks}
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    node, result = ray.get(done[0])
                except ray.exceptions.RayTaskError as err:
                    cause = err.cause if getattr(err, "cause", None) is not None else err
                    path = getattr(refs[done[0]], "path", "?")
                    attempts = self.max_retries + 1
                    if isinstance(cause, PrepError):
                        raise type(cause)(f"shard {path}: {cause}") from None
                    raise PrepError(f"shard {path} failed after {attempts} attempt(s): {type(cause).__name__}: {cause}") from None
                except ray.exceptions.RayError as err:
                    path = getattr(refs[done[0]], "path", "?")
                    raise PrepError(f"shard {path} failed: {err}") from None
                self.tasks_per_node[node] = self.tasks_per_node.get(node, 0) + 1
                log.debug("%s done on Ray node %s", getattr(refs[done[0]], "path", "a task"), node)
                yield result
            self._log_nodes(ray)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            self._disconnect(ray)

    def _log_nodes(self, ray) -> None:
        addresses = {node["NodeID"]: node.get("NodeManagerAddress", "?") for node in ray.nodes()}
        spread = ", ".join(
            f"{node[:12]} ({addresses.get(node, '?')}): {count}" for node, count in sorted(self.tasks_per_node.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        log.info("ray: %d task(s) ran on %d node(s): %s", sum(self.tasks_per_node.values()), len(self.tasks_per_node), spread)
