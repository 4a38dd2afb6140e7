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
        seen["workers"] = executor.worker_pids()
        raise stop("stopped while planning")

    monkeypatch.setattr(pipeline, "read_items", planning)
    with pytest.raises(stop):
        pipeline.convert(
            name="test", source=ImageDirSource(str(imagenet_folder.root)), labels=SpaceLabels(str(imagenet_folder.labels)),
            splitter=NoSplit("train"), encoder=PassthroughEncoder(), writer=TFRecordWriter(shard_size=10, features={"image": "encoded", "label": "label"}), executor=executor,
            output_dir=str(tmp_path / "out"), progress=False,
        )
    assert len(seen["workers"]) == 2  # forked before planning
    assert executor.worker_pids() == [] and _gone(seen["workers"])
    assert not (tmp_path / "out").exists()


def test_the_pool_is_started_once_and_closed_idle(tmp_path):
    executor = LocalExecutor(2)
    executor.start()
    pids = executor.worker_pids()
    executor.start()  # a second start keeps the same workers
    assert executor.worker_pids() == pids
    assert list(executor.map(_square, None, [1, 2, 3])) and executor.worker_pids() == pids
    executor.close()
    assert executor.worker_pids() == [] and _gone(pids)
    assert os.getpid() not in pids


def _square(job, task):
    return task * task


class _InterruptedStart(LocalExecutor):
    def start(self) -> None:
        super().start()
        self.pids = self.worker_pids()
        raise KeyboardInterrupt  # Ctrl-C just as the workers came up


def test_ctrl_c_while_the_workers_start_ends_them(tmp_path, imagenet_folder):
    executor = _InterruptedStart(2)
    with pytest.raises(KeyboardInterrupt):
        pipeline.convert(
            name="test", source=ImageDirSource(str(imagenet_folder.root)), labels=SpaceLabels(str(imagenet_folder.labels)),
            splitter=NoSplit("train"), encoder=PassthroughEncoder(), writer=TFRecordWriter(shard_size=10, features={"image": "encoded", "label": "label"}),
            executor=executor, output_dir=str(tmp_path / "out"), progress=False,
        )
    assert executor.worker_pids() == [] and _gone(executor.pids)


def test_workers_that_do_not_die_of_sigterm_are_killed(tmp_path):
    """Workers with SIGTERM blocked (a signal mask inherited from the driver) or not yet set up, and busy:
    ending the pool after an error must not wait for them."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import signal, time
        from prep.executors import local
        local._worker_init = lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

        def busy(job, task):  # one worker fails after a moment, the other works on, deaf to SIGTERM
            time.sleep(task)
            if task < 1:
                raise RuntimeError("the first error")

        executor = local.LocalExecutor(2)
        executor.start()
        started = time.monotonic()
        try:
            list(executor.map(busy, None, [60, 0.5]))
        except RuntimeError:
            pass
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



@pytest.mark.parametrize("then", ["killed", "ctrl-c"])
def test_a_worker_ended_halfway_through_sending_its_result_does_not_hang_the_stop(then):
    """A content scan's results are large: a worker can die, or be ended by Ctrl-C, halfway through sending one.
    The run must raise at once, not wait for the rest of the result (as it did when this process, or another
    worker, held the far end of the pipe too, so the pipe never ended)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import gc, os, signal, struct, threading, time
        from multiprocessing.connection import Connection
        from prep.executors.local import LocalExecutor

        def half_sent(job, task):  # the header of a 50 MB result and 1 MB of it, then nothing
            if task == "sleep":
                time.sleep(60)
            conn, = [o for o in gc.get_objects() if isinstance(o, Connection) and not o.closed]  # its only pipe
            os.write(conn.fileno(), struct.pack("!i", 50_000_000) + b"x" * 1_000_000)
            if {then!r} == "killed":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)

        executor = LocalExecutor(3)
        executor.start()
        running = executor.map(half_sent, None, ["send", "sleep", "sleep"])
        if {then!r} == "ctrl-c":
            threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        try:
            next(running)
        except BaseException as err:
            print("stopped in", round(time.monotonic() - started), "by", type(err).__name__, err)
        executor.close(abort=True)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("stopped in"), proc.stdout + proc.stderr
    if then == "killed":
        assert "by PrepError a worker process died" in proc.stdout, proc.stdout
    else:
        assert "by KeyboardInterrupt" in proc.stdout, proc.stdout
