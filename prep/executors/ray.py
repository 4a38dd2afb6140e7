"""RayExecutor: shard tasks as Ray tasks, on a local instance or a cluster."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator, Sequence

from prep.core import interrupts, storage
from prep.core.errors import ConfigError, PrepError
from prep.executors.base import Executor

log = logging.getLogger(__name__)

def _ray_task(fn: Callable, job, task):
    import ray

    # Which node ran the task travels beside the result, never inside it: shards and summary.json stay
    # byte-identical to executor=local, and the driver's log says how the work spread.
    return ray.get_runtime_context().get_node_id(), fn(job, task)


# Ray's scheduling strategies prep offers: SPREAD hands shard tasks to as many nodes as have a free CPU (their
# reads and uploads then use every node's network); DEFAULT packs them onto few nodes first.
SCHEDULING = ("SPREAD", "DEFAULT")


class RayExecutor(Executor):
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
            raise ConfigError(f"executor.runtime_env={runtime_env!r}: give a mapping (e.g. {{pip: ['prep-records==1.0']}}) or null")
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
            raise ConfigError("executor=ray needs Ray: pip install 'prep-records[ray]'") from None
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
