"""The worker pool: forked before planning, kept for the run, and ended, not waited for, when a run stops."""

from __future__ import annotations

import os
import time

import pytest

from prep import pipeline
from prep.encoders.passthrough import PassthroughEncoder
from prep.executors.local import LocalExecutor
from prep.labels.space import SpaceLabels
from prep.sources.image_dir import ImageDirSource
from prep.split import NoSplit
from prep.writers.tfrecord import TFRecordWriter


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _gone(pids, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_a_run_stopped_while_planning_ends_its_workers(tmp_path, imagenet_folder, monkeypatch, stop):
    executor = LocalExecutor(2)
    seen = {}

    def planning(*args, **kwargs):
        seen["workers"] = [p.pid for p in executor._pool._processes.values()]
        raise stop("stopped while planning")

    monkeypatch.setattr(pipeline, "read_items", planning)
    with pytest.raises(stop):
        pipeline.convert(
            name="test", source=ImageDirSource(str(imagenet_folder.root)), labels=SpaceLabels(str(imagenet_folder.labels)),
            splitter=NoSplit("train"), encoder=PassthroughEncoder(), writer=TFRecordWriter(shard_size=10, features={"image": "encoded", "label": "label"}), executor=executor,
            output_dir=str(tmp_path / "out"), progress=False,
        )
    assert len(seen["workers"]) == 2  # forked before planning
    assert executor._pool is None and _gone(seen["workers"])
    assert not (tmp_path / "out").exists()


def test_the_pool_is_started_once_and_closed_idle(tmp_path):
    executor = LocalExecutor(2)
    executor.start()
    pids = [p.pid for p in executor._pool._processes.values()]
    executor.start()  # a second start keeps the same workers
    assert [p.pid for p in executor._pool._processes.values()] == pids
    assert list(executor.map(_square, None, [1, 2, 3])) and [p.pid for p in executor._pool._processes.values()] == pids
    executor.close()
    assert executor._pool is None and _gone(pids)
    assert os.getpid() not in pids


def _square(job, task):
    return task * task


class _InterruptedStart(LocalExecutor):
    def start(self) -> None:
        super().start()
        self.pids = [p.pid for p in self._pool._processes.values()]
        raise KeyboardInterrupt  # Ctrl-C just as the workers came up


def test_ctrl_c_while_the_workers_start_ends_them(tmp_path, imagenet_folder):
    executor = _InterruptedStart(2)
    with pytest.raises(KeyboardInterrupt):
        pipeline.convert(
            name="test", source=ImageDirSource(str(imagenet_folder.root)), labels=SpaceLabels(str(imagenet_folder.labels)),
            splitter=NoSplit("train"), encoder=PassthroughEncoder(), writer=TFRecordWriter(shard_size=10, features={"image": "encoded", "label": "label"}),
            executor=executor, output_dir=str(tmp_path / "out"), progress=False,
        )
    assert executor._pool is None and _gone(executor.pids)


def test_workers_that_do_not_die_of_sigterm_are_killed(tmp_path):
    """Workers with SIGTERM blocked (a signal mask inherited from the driver) or not yet set up, and busy:
    ending the pool after an error must not wait for them."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import signal, time
        from prep import executors
        from prep.executors.local import LocalExecutor
        executors._worker_init = lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        executor = LocalExecutor(2)
        executor.start()
        for _ in range(2):
            executor._pool.submit(time.sleep, 60)
        time.sleep(0.5)
        started = time.monotonic()
        executor.close(abort=True)
        print("ended in", round(time.monotonic() - started, 1))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "ended in" in proc.stdout


def test_ending_the_workers_survives_a_default_sigpipe():
    """prep-verify's cli (and many programs) restore SIGPIPE's default; ending a pool writes to the queues of
    workers that are gone, which must not kill the process."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import signal
        from prep.executors.local import LocalExecutor
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        for _ in range(3):
            executor = LocalExecutor(2)
            executor.start()
            executor.close(abort=True)
        print("alive", signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert proc.stdout.strip() == "alive True"



def test_a_worker_ended_halfway_through_sending_its_result_does_not_hang_the_stop():
    """A content scan's results are large: Ctrl-C could end a worker halfway through sending one, and the pool's
    reader then waited for the rest forever (this process holds the pipe's other end), so the run never exited."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import os, signal, struct, threading, time
        from prep.executors.local import LocalExecutor

        executor = LocalExecutor(2)

        def half_sent(job, task):  # the header of a 1 MB result and 10 of its bytes, then nothing
            os.write(executor._pool._result_queue._writer.fileno(), struct.pack("!i", 1_000_000) + b"x" * 10)
            time.sleep(60)

        executor.start()
        running = executor.map(half_sent, None, [1, 2])
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        try:
            next(running)
        except KeyboardInterrupt:
            print("stopped in", round(time.monotonic() - started))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("stopped in"), proc.stdout + proc.stderr
