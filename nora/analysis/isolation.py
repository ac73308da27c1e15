"""Rerun a user's training function and compare the results, in fresh processes or in this one.

A rerun in the same process shares everything a bug can hide in: the string-hash secret
(so ``set`` iteration order), module-level caches, already-seeded globals. ``isolation=
"process"`` runs each replica in a fresh interpreter state with its own ``PYTHONHASHSEED``.
Starting Python and importing torch costs seconds, so one warm *template* interpreter per
hash seed is kept (torch imported, nothing of the user's), and every replica is forked from
it: it starts from the template's clean state and its own hash secret, for milliseconds.

``fn`` must be a module-level function, ``fn(seed, *args, **kwargs)``; it is sent to the
replica by reference (module and qualified name, plus ``sys.path``), its arguments with
pickle. It returns tensors, arrays, a (nested) state dict or a module; replicas send that back
as plain data (``torch.save`` / ``weights_only`` load), compared with ``nora.compare``.
A replica gets the caller's working directory, environment, ``sys.path``, torch thread
count and ``cudnn.benchmark``; ``random`` and numpy's global RNG are reseeded from the OS as
in a new interpreter; its output is kept and shown when it fails. The default hash seeds are
fixed, so a verdict is itself reproducible; two seeds can give one set order by chance, and
``runs=3`` lowers that.
"""
from __future__ import annotations

import functools
import os
import pickle
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch

from nora import _replica
from nora.analysis.compare import Comparison, compare
from nora.templates import (POOL, START_LIMIT, ReplicaError, Template, abort_replica,
                            default_hash_seeds, warm)
from nora.errors import NoraError

__all__ = ["ReplicaError", "check_reproducible", "warm_up"]


def warm_up(runs: int = 2) -> None:
    """Start the template interpreters for ``runs`` replicas now, without waiting for them.

    A no-op inside a replica (``NORA_REPLICA`` set), which must not start interpreters of its
    own just because it imports a module that warms up.
    """
    warm(default_hash_seeds(runs))


def check_reproducible(fn: Callable[..., Any], *, seed: int | None, runs: int = 2,
                       isolation: Literal["process", "inprocess"] = "process",
                       args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                       timeout: float = 120.0, hash_seeds: Sequence[int] | None = None,
                       parallel: bool = True) -> Comparison:
    """Run ``fn(seed, *args, **kwargs)`` ``runs`` times and compare each result to the first.

    Args:
        fn: a module-level function (sent by reference; lambdas, nested functions and
            functions of a script's ``__main__`` cannot be).
        seed: passed to ``fn``.
        runs: replicas, at least 2.
        isolation: ``"process"`` forks each replica from a warm interpreter with its own
            ``PYTHONHASHSEED``; ``"inprocess"`` calls ``fn`` here, one run after the other.
        timeout: seconds each replica may run before it is killed (starting a template
            interpreter, once per hash seed, has its own limit of 120 s).
        hash_seeds: one distinct ``PYTHONHASHSEED`` per replica (default: fixed distinct values,
            so the verdict is itself reproducible).
        parallel: run process replicas at the same time.

    Raises:
        ReplicaError: a replica raised (with its traceback), died or timed out.
    """
    if not isinstance(runs, int) or runs < 2:
        raise NoraError(f"check_reproducible: runs must be an int >= 2, got {runs!r}")
    if isolation not in ("process", "inprocess"):
        raise NoraError(f"check_reproducible: isolation must be 'process' or 'inprocess', "
                        f"got {isolation!r}")
    kwargs = dict(kwargs or {})
    if isolation == "inprocess":
        labels = [f"run {i}" for i in range(runs)]
        results = [_call_here(fn, seed, args, kwargs, label) for label in labels]
    else:
        seeds = list(hash_seeds) if hash_seeds is not None else default_hash_seeds(runs)
        if len(seeds) != runs or len(set(seeds)) != runs or \
                not all(isinstance(h, int) and 0 <= h < 2**32 for h in seeds):
            raise NoraError(f"check_reproducible: hash_seeds must be {runs} distinct ints in "
                            f"[0, 2**32), got {hash_seeds!r}")
        labels = [f"replica {i} (PYTHONHASHSEED={h})" for i, h in enumerate(seeds)]
        results = _run_processes(fn, seed, args, kwargs, seeds, labels, timeout, parallel)
    return _combine(results, labels, isolation)


def run_once(fn: Callable[..., Any], seed: Any, *, isolation: str, label: str,
             args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
             hash_seed: int | None = None, timeout: float = 120.0) -> Any:
    """One run of ``fn`` under the caller's torch settings, as the plain data that is compared.

    For other checks that rerun ``fn`` (``nora.analysis.environment``); ``hash_seed`` picks the
    template of a process run (default: the first of the fixed hash seeds).
    """
    kwargs = dict(kwargs or {})
    if isolation == "inprocess":
        return _call_here(fn, seed, args, kwargs, label)
    h = default_hash_seeds(1)[0] if hash_seed is None else hash_seed
    return _run_processes(fn, seed, args, kwargs, [h], [label], timeout, False)[0]


def _call_here(fn: Callable[..., Any], seed: Any, args: Sequence[Any], kwargs: dict[str, Any],
               label: str) -> Any:
    try:
        return _replica.plain(fn(seed, *args, **kwargs))
    except Exception as exc:
        raise ReplicaError(f"{_name(fn)} raised in {label}:\n{traceback.format_exc()}") from exc


def _name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _reference(fn: Any) -> tuple[str, str, str | None]:
    """(module, qualname, file) by which a fresh interpreter can import ``fn``."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if isinstance(fn, functools.partial) or not module or not qualname:
        raise NoraError(f"check_reproducible: fn {fn!r} has no importable name; pass a "
                        "module-level function and give its arguments with args=/kwargs=")
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise NoraError(f"check_reproducible: fn {module}.{qualname} is a lambda or a nested "
                        "function, which a fresh interpreter cannot import; define it at "
                        "module level")
    if module == "__main__":
        raise NoraError(f"check_reproducible: fn {qualname} is defined in __main__ (a script), "
                        "which a fresh interpreter cannot import; move it into a module")
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if obj is not fn:
        raise NoraError(f"check_reproducible: fn {module}.{qualname} is not what that name "
                        "refers to in its module (decorated or rebound?); pass that function")
    return module, qualname, getattr(sys.modules[module], "__file__", None)


def _run_processes(fn: Callable[..., Any], seed: Any, args: Sequence[Any],
                   kwargs: dict[str, Any], hash_seeds: list[int], labels: list[str],
                   timeout: float, parallel: bool) -> list[Any]:
    module, qualname, file = _reference(fn)
    with tempfile.TemporaryDirectory(prefix="nora-replicas-") as tmp, POOL.lock:
        payload = os.path.join(tmp, "payload.pkl")
        try:
            Path(payload).write_bytes(pickle.dumps((seed, tuple(args), kwargs)))
        except Exception as exc:
            raise NoraError(f"check_reproducible: the arguments of {_name(fn)} cannot be "
                            f"pickled for a fresh interpreter: {exc}") from exc
        base = {"module": module, "qualname": qualname, "file": file, "payload": payload,
                "cwd": os.getcwd(), "sys_path": list(sys.path), "env": dict(os.environ),
                "threads": torch.get_num_threads(),
                "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}
        templates = POOL.get(hash_seeds)
        ready_by = time.monotonic() + max(timeout, START_LIMIT)
        running: list[tuple[int, Template, int, float]] = []
        try:
            for i, t in enumerate(templates):
                if not t.ready:
                    if t.read(ready_by, "ready") is None:
                        POOL.discard(t)
                        raise ReplicaError(f"the template for {labels[i]} did not start "
                                           f"within {max(timeout, START_LIMIT)} s")
                    t.ready = True
                files = {k: os.path.join(tmp, f"{i}.{k}") for k in ("out", "err", "log")}
                try:
                    t.send(dict(base, **files))
                    started = t.read(time.monotonic() + timeout, "started")
                except ReplicaError:
                    POOL.discard(t)
                    raise
                if started is None:
                    POOL.discard(t)
                    raise ReplicaError(f"{labels[i]} did not start within {timeout} s")
                running.append((i, t, started["pid"], time.monotonic() + timeout))
                if not parallel:
                    _finish(running.pop(), fn, labels, tmp, timeout)
            while running:
                _finish(running.pop(0), fn, labels, tmp, timeout)
        finally:
            for _, t, pid, _ in running:      # aborted: kill what still runs
                abort_replica(t, pid)
        return [torch.load(os.path.join(tmp, f"{i}.out"), weights_only=True)
                for i in range(len(templates))]


def _finish(item: tuple[int, Template, int, float], fn: Any, labels: list[str], tmp: str,
            timeout: float) -> None:
    i, t, pid, deadline = item
    done = t.read(deadline, "done", pid)
    if done is None:
        abort_replica(t, pid)
        raise ReplicaError(f"{labels[i]} of {_name(fn)} did not finish within timeout="
                           f"{timeout!r} s; it was killed")
    status = done["status"]
    if status != 0:
        err, log = Path(tmp, f"{i}.err"), Path(tmp, f"{i}.log")
        how = f"signal {-status}" if status < 0 else f"exit code {status}"
        tb = (err.read_text(errors="replace") if err.exists()
              else f"(no traceback: the replica died with {how})\n")
        out = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        raise ReplicaError(f"{_name(fn)} raised in {labels[i]}:\n{tb}"
                           + (f"--- its output (last 4000 chars) ---\n{out}" if out else ""))


def _combine(results: list[Any], labels: list[str], isolation: str) -> Comparison:
    """Each replica against the first, merged into one verdict."""
    comps = [(lab, compare(results[0], r, labels=(labels[0], lab)))
             for lab, r in zip(labels[1:], results[1:])]
    bad = [(lab, c) for lab, c in comps if not c.identical]
    others = (labels[1] if len(labels) == 2
              else f"{len(labels) - 1} reruns ({', '.join(labels[1:])})")
    if not bad:
        return replace(comps[0][1], labels=(labels[0], others))
    divergent: list[str] = []
    for _, c in bad:
        divergent += [n for n in c.divergent_tensors if n not in divergent]
    multi = len(comps) > 1
    details = [f"{lab}: {d}" if multi else d for lab, c in bad for d in c.details]
    if isolation == "process":
        hint = ("the result depends on the process (each replica had its own PYTHONHASHSEED): "
                "look for iteration over a set or dict of strings (sort it), hash()- or "
                "id()-based ordering, or module-level state; if isolation='inprocess' is "
                "identical, the cause is process state, not the training math.")
    else:
        hint = ("reruns in one process differ: fn draws from an RNG it does not seed from "
                "`seed` (derive torch.Generator / np.random.default_rng from it), keeps state "
                "between calls, or uses nondeterministic kernels or unordered data loading.")
    first = bad[0][1]
    cause = first.cause + (f" (and in {len(bad) - 1} more rerun(s))" if len(bad) > 1 else "")
    return Comparison(False, max(c.max_abs_diff for _, c in bad), None, divergent, {}, details,
                      cause, hint, [], (labels[0], others))
