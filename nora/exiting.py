"""How a NORA process ends: on a signal with its records closed, and quickly.

``signals_as_interrupts()`` turns SIGINT and SIGTERM into an ``Interrupted`` exception (a
``KeyboardInterrupt``) in the main thread, so a run stopped by Ctrl-C or by a scheduler's
SIGTERM unwinds like any error: the runner marks the manifest ``interrupted``, files are
closed, and the command line exits with 128 + the signal number (130, 143) and one line.
A second signal while the first is being handled ends the process at once (the user insists).

At exit CPython sweeps every object the garbage collector tracks; after torch (with sympy
and hydra) is loaded and a run has trained, that sweep takes 0.5-0.8 s here, paid by every
CLI call and every pytest process (xdist workers included, whose exits the controller waits
for). Freezing the heap at exit skips the sweep; files and reports are closed before then.
"""
from __future__ import annotations

import atexit
import contextlib
import gc
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_registered = False
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The process received ``signum``; ``exit_code`` is the shell's 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def exit_code_of(exc: BaseException) -> int:
    """130 for Ctrl-C (a plain ``KeyboardInterrupt``), 128 + signum for a caught signal."""
    return getattr(exc, "exit_code", 128 + signal.SIGINT)


@contextlib.contextmanager
def signals_as_interrupts(signums: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """While the block runs, the first SIGINT / SIGTERM raises ``Interrupted`` here."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner, fired = os.getpid(), []

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner or fired:      # a forked worker, or a second signal
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def skip_exit_collection() -> None:
    """Register, once per process, a ``gc.freeze()`` that runs when the interpreter exits
    (not before, so a long-lived process that called ``pytest.main()`` collects as usual)."""
    global _registered
    if not _registered:
        atexit.register(gc.freeze)
        _registered = True
