"""Ctrl-C and SIGTERM stop a run however they arrive: never lost in a place where Python drops exceptions."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def prep_in_subprocess(setup: str, folder, out, workers: int) -> subprocess.CompletedProcess:
    """The prep command on `folder`, in a fresh Python that first runs `setup` (hooks that send a signal at an
    exact moment)."""
    script = textwrap.dedent(setup) + textwrap.dedent(
        f"""
        import sys
        import prep.__main__
        sys.argv = ["prep", "dataset=images", "source.image_dir={folder.root}", "labels.path={folder.labels}",
                    "hydra.run.dir={out}", "executor.workers={workers}", "progress=false"]
        prep.__main__.cli()
        """
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("who", ["driver", "worker"])
def test_ctrl_c_while_the_workers_are_forked_is_not_lost(tmp_path, imagenet_folder, who):
    """Ctrl-C reaches the whole process group; arriving while the workers are forked, Python raised it inside a
    fork hook (logging's lock release) and dropped it, so the run finished as if nobody had pressed it. Fork
    hooks that send SIGINT make that moment exact: the driver's stops the run (exit 130, no summary.json);
    a worker's, still being made, is ignored as Ctrl-C is in every worker, and the run finishes cleanly."""
    hook = {"driver": "before", "worker": "after_in_child"}[who]
    out = tmp_path / "out"
    setup = f"""
        import os, signal, sys
        os.register_at_fork({hook}=lambda: os.kill(os.getpid(), signal.SIGINT))
    """
    proc = prep_in_subprocess(setup, imagenet_folder, out, workers=2)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    if who == "driver":
        assert proc.returncode == 130, (proc.returncode, proc.stderr)
        assert "interrupted" in proc.stderr
        assert not (out / "summary.json").exists()
    else:
        assert proc.returncode == 0, (proc.returncode, proc.stderr)
        assert (out / "summary.json").exists()


def test_a_ctrl_c_python_dropped_still_stops_the_run_before_summary(tmp_path, imagenet_folder):
    """Python drops a KeyboardInterrupt raised in a finaliser (and in fork hooks, callbacks): the signal is
    remembered, and the run stops at its next commit point, never writing summary.json."""
    out = tmp_path / "out"
    setup = """
        import os, signal, sys
        from prep.runfiles import summary as summaries

        class Dropped:
            def __del__(self):  # Python reports an exception raised here and carries on
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(200_000):  # Python runs the handler here, inside __del__
                    pass

        build = summaries.build
        def build_then_drop(**kwargs):
            Dropped()
            return build(**kwargs)
        summaries.build = build_then_drop
    """
    proc = prep_in_subprocess(setup, imagenet_folder, out, workers=1)
    assert "Exception ignored in" in proc.stderr  # the dropped one: this test makes what it says
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert "interrupted" in proc.stderr
    assert not (out / "summary.json").exists()
    assert list(out.glob("*-of-*")), "the finished shards are kept for resume=true"


def test_ctrl_c_after_the_summary_is_written_ends_quietly(tmp_path, imagenet_folder):
    """The run is finished once summary.json is written: a Ctrl-C then (printing the next steps, or during the
    interpreter's shutdown) ends the process as any program's, with no traceback and no false 'nothing written'."""
    out = tmp_path / "out"
    setup = """
        import os, signal
        import prep.__main__ as entry

        next_steps = entry.next_steps
        def interrupted_next_steps(output_dir):
            os.kill(os.getpid(), signal.SIGINT)
            return next_steps(output_dir)
        entry.next_steps = interrupted_next_steps
    """
    proc = prep_in_subprocess(setup, imagenet_folder, out, workers=2)
    assert proc.returncode == -2, (proc.returncode, proc.stderr)  # ended by SIGINT, as the shell reports it
    assert "Traceback" not in proc.stderr and "nothing was written" not in proc.stderr, proc.stderr
    assert (out / "summary.json").exists()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_while_ray_starts_stops_the_instance_it_started(monkeypatch, sig):
    """ray.init starts a local instance's daemons before ray.shutdown knows of them: a Ctrl-C then left them
    running after prep exited. The Ctrl-C is taken once Ray has started, and the instance is shut down. Ray
    sets its own SIGTERM handler (sys.exit) while it connects: a SIGTERM then is an interrupt all the same."""
    import os
    import signal
    import types

    from prep.core import interrupts
    from prep.executors.ray import RayExecutor

    calls = []

    def init(**kwargs):
        if sig == "SIGTERM":
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))  # as ray.init does
        os.kill(os.getpid(), getattr(signal, sig))  # the signal while the daemons start
        sum(range(10_000))  # Python would raise it here, inside ray.init
        calls.append("started")

    ray = types.SimpleNamespace(is_initialized=lambda: False, init=init, shutdown=lambda: calls.append("shutdown"))
    monkeypatch.setitem(sys.modules, "ray", ray)
    previous = {sig: signal.getsignal(sig) for sig in interrupts.SIGNALS}
    interrupts.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            RayExecutor()._connect()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        interrupts._received.clear()  # this test's Ctrl-C must not stop later runs in this process
    # Ctrl-C waits until Ray has started; Ray's own SIGTERM handler ends ray.init wherever Python runs it
    assert calls == ["started", "shutdown"] if sig == "SIGINT" else calls[-1:] == ["shutdown"] and calls.count("shutdown") == 1


@pytest.mark.parametrize("entry", ["prep command", "python -m prep"])
def test_ctrl_c_while_prep_loads_is_one_line(tmp_path, entry):
    """Importing Hydra takes a third of a second, before any handler of the run: a Ctrl-C then printed a
    KeyboardInterrupt traceback. It is one line and status 130."""
    # what sys.argv[0] is for each: the console script, or python -m's path of __main__.py
    argv0, load = {
        "prep command": ("/somewhere/bin/prep", "import prep.__main__"),
        "python -m prep": ("/somewhere/prep/__main__.py", "import runpy; runpy.run_module('prep', run_name='__main__')"),
    }[entry]
    script = textwrap.dedent(
        f"""
        import builtins, os, signal, sys
        sys.argv = ["{argv0}", "--help"]
        real = builtins.__import__
        def hooked(name, *args, **kwargs):
            if name == "hydra":
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while Hydra loads
            return real(name, *args, **kwargs)
        builtins.__import__ = hooked
        {load}
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert proc.stderr == "interrupted before the run started: nothing was written\n"


def test_ctrl_c_before_any_shard_does_not_offer_a_resume(tmp_path, imagenet_folder):
    """Stopped while planning (or scanning, or in a dry run), a run has written no shard: the line says so
    instead of offering resume=true."""
    out = tmp_path / "out"
    setup = """
        import os, signal, sys
        from prep import pipeline

        read_items = pipeline.read_items
        def interrupted_planning(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)
            return read_items(*args, **kwargs)
        pipeline.read_items = interrupted_planning
    """
    proc = prep_in_subprocess(setup, imagenet_folder, out, workers=2)
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert "interrupted before any shard was written: there is nothing to resume" in proc.stderr
    assert "resume=true" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_second_ctrl_c_while_a_stopped_run_exits_is_quiet(tmp_path, imagenet_folder):
    """After the 'interrupted' line, Python still runs its exit handlers: a second Ctrl-C there printed a
    KeyboardInterrupt traceback from one of them. It ends the process, quietly, with the same status."""
    out = tmp_path / "out"
    setup = """
        import atexit, os, signal, sys
        from prep import pipeline

        def second_ctrl_c():
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(10_000))
        atexit.register(second_ctrl_c)  # while Python exits

        read_items = pipeline.read_items
        def interrupted_planning(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C
            return read_items(*args, **kwargs)
        pipeline.read_items = interrupted_planning
    """
    proc = prep_in_subprocess(setup, imagenet_folder, out, workers=2)
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert proc.stderr.count("interrupted") == 1
