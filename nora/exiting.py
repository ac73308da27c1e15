"""A quicker interpreter exit for processes that trained.

At exit CPython sweeps every object the garbage collector tracks; after torch (with sympy
and hydra) is loaded and a run has trained, that sweep takes 0.5-0.8 s here, paid by every
CLI call and every pytest process (xdist workers included, whose exits the controller waits
for). Freezing the heap at exit skips the sweep; files and reports are closed before then.
"""
from __future__ import annotations

import atexit
import gc

_registered = False


def skip_exit_collection() -> None:
    """Register, once per process, a ``gc.freeze()`` that runs when the interpreter exits
    (not before, so a long-lived process that called ``pytest.main()`` collects as usual)."""
    global _registered
    if not _registered:
        atexit.register(gc.freeze)
        _registered = True
