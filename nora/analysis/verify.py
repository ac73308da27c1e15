"""``nora.verify``: prove a recorded run reproducible at a fraction of its cost.

First a static audit of its records and checkpoints (seconds, no training); if that finds
nothing and this machine can replay the run bit for bit, a sample of segments drawn with a
recorded seed within ``budget`` of the run's steps is replayed from the checkpoints in
fresh processes and compared step by step. The verdict and what was audited go to
``verification.json`` in the run directory.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from nora.analysis.verify_audit import Audit, run_audit
from nora.analysis.verify_records import load_records
from nora.analysis.verify_report import Verification
from nora.analysis.verify_segments import (plan_segments, run_segments, segments_of,
                                          warm_templates)
from nora.errors import ConfigError
from nora.records import write_json

__all__ = ["Verification", "verify"]


def _check_args(budget: float, workers: int | None, seed: int, timeout: float) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or \
            not 0 < budget <= 1:
        raise ConfigError(f"verify: budget must be a fraction of the run's steps in (0, 1], "
                          f"e.g. 0.05; got {budget!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError(f"verify: workers must be an int >= 1 (or None for one per CPU); "
                          f"got {workers!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"verify: seed must be an int >= 0; got {seed!r}")
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"verify: timeout must be a positive number of seconds; "
                          f"got {timeout!r}")


def verify(run_dir: str | Path, *, budget: float = 0.05, workers: int | None = None,
           seed: int = 0, timeout: float = 600.0, write: bool = True) -> Verification:
    """Audit ``run_dir`` and replay a sample of its segments.

    Args:
        run_dir: a run directory written by ``nora train`` / ``nora.train``.
        budget: the most steps replayed, as a fraction of the run's steps (1 = all).
        workers: processes replaying segments side by side (default: one per CPU).
        seed: draws the random segments; recorded, so a verification can be repeated.
        timeout: seconds one segment may take.
        write: write ``verification.json`` into the run directory.

    Raises:
        ConfigError: a bad argument, or ``run_dir`` is not a readable run directory.
    """
    _check_args(budget, workers, seed, timeout)
    t0 = time.perf_counter()
    rec = load_records(run_dir)
    segments = segments_of(rec)
    n_workers = workers or os.cpu_count() or 1

    def warm(audit: Audit) -> None:
        """Start the replay interpreter now if a replay may follow: it imports torch while
        the audit reads the checkpoints (``nora verify`` started it before that)."""
        if plan_segments(segments, budget, seed, {a for a, _ in segments})[0] and \
                not audit.unverifiable:
            warm_templates()

    audit = run_audit(rec, warm)
    audit_s = time.perf_counter() - t0
    results: list[dict] = []
    findings = list(audit.findings)
    drawn, replay_s = 0, 0.0
    if audit.unverifiable:
        verdict = "unverifiable"
    elif findings:
        verdict = "failed"
        audit.notes.append("nothing replayed: the static audit failed")
    else:
        starts = audit.replayable | {rec.first_step}
        plan, drawn = plan_segments(segments, budget, seed, starts)
        if not plan:
            audit.unverifiable.append(
                f"no segment fits a budget of {budget:g} x {rec.total_steps - rec.first_step} "
                f"steps (segment lengths: {sorted({b - a for a, b in segments})}); raise "
                "--budget or keep checkpoints more often (train.checkpoint_every)")
            verdict = "unverifiable"
        else:
            results, bad = run_segments(rec, plan, n_workers, timeout)
            replay_s = sum(r["seconds"] for r in results)
            findings += bad
            verdict = "failed" if findings else "verified"
    first, tensors = None, []
    diverged = [r for r in results if r.get("first_divergent_step") is not None]
    if diverged:
        first_seg = min(diverged, key=lambda r: r["first_divergent_step"])
        first, tensors = first_seg["first_divergent_step"], first_seg["tensors"]
    else:
        chain = [f for f in findings if f["check"] == "chain" and f["step"] is not None]
        if chain:
            first, tensors = chain[0]["step"] - 1, chain[0]["tensors"]
    result = Verification(
        run_dir=Path(run_dir), verdict=verdict, checks=audit.checks, findings=findings,
        reasons=audit.unverifiable, notes=audit.notes, segments=results,
        total_segments=len(segments), random_segments=drawn,
        audited_steps=sum(r["steps"] for r in results),
        total_steps=rec.total_steps - rec.first_step, budget=float(budget), seed=seed,
        workers=min(n_workers, max(1, len(results))), seconds=0.0, replay_seconds=replay_s,
        training_seconds=rec.manifest.get("duration_sec"), first_divergent_step=first,
        divergent_tensors=list(tensors), audit_seconds=round(audit_s, 3))
    result.seconds = time.perf_counter() - t0
    if write:
        write_json(Path(run_dir) / "verification.json", result.to_dict())
    return result
