"""Ctrl-C and SIGTERM: one way to stop a run, taken however the signal arrives.

Python turns a signal into KeyboardInterrupt in whatever the main thread runs next. When that is a callback
whose exceptions Python reports and drops (a fork hook such as logging's lock release, a finaliser), the
interrupt is lost and the run would finish as if nobody had pressed Ctrl-C. So:

- `install` records every signal it turns into KeyboardInterrupt, and `check` raises it again at the points
  where a run commits (each finished shard, before summary.json): a swallowed Ctrl-C still stops the run;
- `deferred` holds the signals back (noted, not lost) while worker processes are forked, so one arriving
  then is taken by this process after the forks, never inside a fork hook, and never by a half-made worker;
- `held` ignores them while a stopped run cleans up, so a second Ctrl-C cannot cut the cleanup short;
- `starting` (while prep loads), `leaving` (once a stopped run has said so) and `uninstall` (after the runs
  are over) let a signal end the process at once, without a traceback from wherever Python then is.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _interrupt(signum, frame):
    _received.append(signum)
    raise KeyboardInterrupt


def _exit_on_signal(line: bytes) -> None:
    def leave(signum, frame):
        if line:
            os.write(2, line)
        os._exit(130)

    for sig in SIGNALS:
        signal.signal(sig, leave)


def starting() -> None:
    """While prep loads (importing Hydra alone takes a third of a second), before `install`: a Ctrl-C or SIGTERM
    ends the process with one line and status 130. Nothing is written yet, and a KeyboardInterrupt raised
    inside the import machinery could only end in a traceback."""
    _exit_on_signal(b"interrupted before the run started: nothing was written\n")


def leaving() -> None:
    """A stopped run has cleaned up and said so: a second Ctrl-C or a SIGTERM while Python exits ends it at
    once with the same status, 130, instead of a KeyboardInterrupt in an exit handler's traceback."""
    _exit_on_signal(b"")


def install() -> None:
    """Ctrl-C and SIGTERM (a scheduler, `kill`) both raise KeyboardInterrupt, and are remembered."""
    _received.clear()
    for sig in SIGNALS:
        signal.signal(sig, _interrupt)


def uninstall() -> None:
    """A finished run has nothing to clean up: Ctrl-C and SIGTERM end the process at once, as any program's."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def check() -> None:
    """Raise KeyboardInterrupt if a signal came since `install`: its first KeyboardInterrupt may have been dropped."""
    if _received:
        raise KeyboardInterrupt


@contextmanager
def deferred(block: bool = True):
    """Ctrl-C and SIGTERM wait until the block ends, then act as they would have. Meanwhile they are only noted:
    the kernel may hand a signal to any thread that does not block it (a numerical library's own threads), and
    Python then runs the handler in the main thread wherever it is, fork hooks included. They are also blocked,
    so processes forked inside the block start with them blocked, and unblock them once their own handlers are
    set (`unblock`); block=False leaves the mask alone, for blocks that start other programs (Ray's daemons must
    take SIGTERM)."""
    if not _main_thread():
        yield
        return
    came: list[int] = []
    handlers = {sig: signal.signal(sig, lambda signum, frame: came.append(signum)) for sig in SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS) if block else None
    try:
        yield
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # one still pending is noted now
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if came:
            signal.raise_signal(came[0])  # to the handler that was there before: Ctrl-C's KeyboardInterrupt


def unblock() -> None:
    """In a forked worker, after its handlers are set: take the signals again (a pending one now acts)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


@contextmanager
def held():
    """Cleaning up after Ctrl-C must not itself be cut short by a second Ctrl-C or a SIGTERM."""
    if not _main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
