"""Does resuming from a checkpoint give the uninterrupted result? ``nora.check_resume``.

A user's training function ``fn(seed, *, stop_at, resume_from, checkpoint_dir) -> state``
is run three times, each in a fresh process by default (a resume in the same process would
inherit the RNG states and caches a real restart loses): uninterrupted; stopped after
``stop_at`` steps, writing its checkpoint into ``checkpoint_dir``; resumed from that
checkpoint to the end. The two final states are compared bit for bit. When they differ, the
verdict names what the checkpoint lacks, read from its contents (optimizer state, scheduler
position, RNG states torch / numpy / python, data position), and, where the runs wrote NORA
records (a NoraCallback or LoopMonitor run directory under ``checkpoint_dir``), what the
first divergent step did differently: another batch (data position), the same batch with
other random draws (RNG state), or the same inputs with other results (model / optimizer).
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from nora.analysis.compare import Comparison, compare
from nora.analysis.isolation import run_once
from nora.errors import NoraError
from nora.analysis.ckpt_audit import audit_file, describe
from nora.records import read_jsonl

__all__ = ["check_resume", "records_cause"]

_HINTS = {
    "optimizer": "save optimizer.state_dict() and load it before resuming",
    "scheduler": "save the scheduler's state_dict (its last_epoch) and load it",
    "rng": "save every RNG state (torch, numpy, python) and restore it on resume",
    "position": "save the data loader's position (the epoch's order and batches consumed), "
                "e.g. a torchdata StatefulDataLoader or NORA's ResumableSampler",
}


def check_resume(fn: Callable[..., Any], *, seed: Any, stop_at: int,
                 isolation: Literal["process", "inprocess"] = "process",
                 args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                 timeout: float = 300.0) -> Comparison:
    """Compare ``fn`` uninterrupted with ``fn`` stopped at ``stop_at`` and resumed.

    Args:
        fn: module-level ``fn(seed, *args, stop_at, resume_from, checkpoint_dir, **kwargs)``;
            with ``stop_at`` set it trains that many steps and writes one checkpoint file
            into ``checkpoint_dir``; with ``resume_from`` (a path) it resumes from it; it
            returns the final state (tensors, state dicts, a module).
        seed: passed to ``fn``.
        stop_at: the step to stop at, an int >= 1.
        isolation: ``"process"`` (each run in a fresh interpreter) or ``"inprocess"``.
        timeout: seconds each run may take.

    Raises:
        NoraError: bad arguments, or ``fn`` wrote no checkpoint.
        ReplicaError: a run raised, died or timed out.
    """
    if not isinstance(stop_at, int) or isinstance(stop_at, bool) or stop_at < 1:
        raise NoraError(f"check_resume: stop_at must be an int >= 1, got {stop_at!r}")
    if isolation not in ("process", "inprocess"):
        raise NoraError(f"check_resume: isolation must be 'process' or 'inprocess', "
                        f"got {isolation!r}")
    extra = dict(kwargs or {})
    with tempfile.TemporaryDirectory(prefix="nora-resume-") as tmp:
        dirs = {k: Path(tmp, k) for k in ("uninterrupted", "stopped", "resumed")}
        for d in dirs.values():
            d.mkdir()

        def run(label: str, stop: int | None, resume: str | None) -> Any:
            kw = dict(extra, stop_at=stop, resume_from=resume, checkpoint_dir=str(dirs[label]))
            return run_once(fn, seed, isolation=isolation, label=label, args=args, kwargs=kw,
                            timeout=timeout)

        full = run("uninterrupted", None, None)
        run("stopped", stop_at, None)
        ckpt = _checkpoint_in(dirs["stopped"], fn)
        resumed = run("resumed", None, str(ckpt))
        verdict = compare(full, resumed, labels=("uninterrupted", f"resumed from {stop_at}"))
        audit = audit_file(ckpt)
        steps = records_cause(dirs["uninterrupted"], dirs["resumed"], stop_at)
    return _verdict(verdict, audit, steps, stop_at)


def _checkpoint_in(directory: Path, fn: Any) -> Path:
    files = [p for p in directory.rglob("*") if p.is_file() and p.suffix in
             (".ckpt", ".pt", ".pth", ".zip", ".tar", ".bin")
             and not p.name.startswith(".") and "state" not in p.parent.name]
    if not files:
        raise NoraError(f"check_resume: {getattr(fn, '__qualname__', fn)!r} stopped at stop_at "
                        f"but wrote no checkpoint (.ckpt/.pt/.pth/.zip) into checkpoint_dir "
                        f"{str(directory)!r}")
    return max(files, key=lambda p: p.stat().st_mtime_ns)


def _verdict(c: Comparison, audit: dict[str, Any], steps: str, stop_at: int) -> Comparison:
    if c.identical:
        note = [] if not audit["missing"] else [f"(the checkpoint still lacks: "
                                                f"{', '.join(audit['missing'])})"]
        return replace(c, details=c.details + note,
                       hint="nothing to fix: the resume reproduces the uninterrupted run.")
    missing = describe(audit)
    cause = (f"resuming from step {stop_at} does not reproduce the uninterrupted run: "
             f"{c.cause}" + (f"; {steps}" if steps else "") + f"; {missing}")
    details = [*([steps] if steps else []), missing, *c.details]
    fixes = [_HINTS[p] for p in audit["missing"] if p in _HINTS]
    hint = ("; ".join(fixes) + "." if fixes else
            "the checkpoint holds every part; look for state restored in the wrong order, or "
            "randomness drawn between the restore and the next step.")
    return replace(c, cause=cause, details=details, hint=hint)


def _steps_of(directory: Path) -> dict[int, dict[str, Any]]:
    runs = sorted(directory.rglob("metrics.jsonl"))
    if not runs:
        return {}
    return {int(r["step"]): r for r in read_jsonl(runs[0]) if r.get("kind") == "step"}


def records_cause(full_dir: Path, resumed_dir: Path, stop_at: int) -> str:
    """What the first divergent step of the resumed run did differently, from NORA's step
    records (batch hash, RNG hash, loss bits); "" when either run wrote none."""
    full, resumed = _steps_of(full_dir), _steps_of(resumed_dir)
    if not full or not resumed:
        return ""
    if min(resumed) <= stop_at:
        return (f"records: the resumed run's steps start again at {min(resumed)} instead of "
                f"{stop_at + 1}: the checkpoint holds no step count or data position")
    for step in sorted(resumed):
        a, b = full.get(step), resumed[step]
        if a is None:
            return f"the resumed run trained step {step}, which the uninterrupted run never did"
        if a.get("batch_hash") != b.get("batch_hash"):
            seen = [s for s, r in full.items() if r.get("batch_hash") == b.get("batch_hash")]
            where = (f"the batch of step {seen[0]} again (the loader restarted its epoch)"
                     if seen and seen[0] < step else
                     f"the batch of step {seen[0]} early (batches shifted)" if seen else
                     "a batch the uninterrupted run never trained (another order)")
            return (f"records: at step {step} the resumed run trained {where}: the data "
                    "position was not restored")
        if a.get("rng_hash") != b.get("rng_hash"):
            return (f"records: step {step} trained the same batch with another torch RNG state "
                    "(different dropout / sampling draws): the RNG state was not restored")
        if a.get("loss_bits") != b.get("loss_bits"):
            return (f"records: step {step} had the same batch and RNG state but another loss: "
                    "the model or optimizer state differs")
    return ""
