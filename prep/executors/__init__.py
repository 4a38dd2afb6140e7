"""Executors, one module per conf/executor choice: run the planned shard tasks, in this process, in worker
processes, or on Ray. The interface every executor meets is prep.executors.base.Executor."""

from prep.executors.base import Executor
from prep.executors.local import LocalExecutor, count_processed
from prep.executors.ray import RayExecutor

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "count_processed"]
