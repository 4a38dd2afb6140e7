"""The executor interface: what the pipeline asks of an executor to run the shard tasks (and the content scan).

An executor subclasses Executor and fills in `map`; the other hooks default to doing nothing. Tasks are
plain functions of (job, task), with job and task picklable, so an executor may run them anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence


class Executor:
    # How many shard tasks run at once here: a CPU-bound encoder (Encoder.cpu_bound) also encodes on this many
    # threads inside one task, so a run with fewer shards than workers still uses every core.
    workers: int = 1

    def start(self) -> None:
        """Start the workers now, before planning, while this process is small (called once, before `map`)."""

    def close(self, abort: bool = False) -> None:
        """Stop the workers: after `map` has yielded every result, or at once after an error or Ctrl-C (abort)."""

    def check_paths(self, output_dir: str, inputs: Sequence[str]) -> None:
        """Refuse, with a ConfigError, paths the workers cannot reach (local paths on a multi-node cluster)."""

    def map(self, fn: Callable, job, tasks: Sequence, progress: Callable[[int, int], None] | None = None) -> Iterator:
        """Yield fn(job, task) for every task, in order of completion; the first error stops the rest and is
        raised here. progress, if given, is called now and then with the images done so far and their bytes."""
        raise NotImplementedError
