"""Sampled segment replay: resume segments of a recorded run from their checkpoints in fresh
processes and compare every replayed step's loss bits and parameter hash with the record.

A segment is the steps between two consecutive kept checkpoints (the first starts from
scratch, the last ends with the run). Which segments are replayed is drawn with a recorded
seed within a budget of steps. Each segment runs in a replica forked from a warm template
interpreter (``nora.templates``, as ``check_reproducible`` uses them), with the recorded
config, seam settings, seed, device and tracked changes and no agent. One template forks
``workers`` replicas side by side: each is a fresh process as before, and the verifier pays
for one torch import instead of one per worker (on two cores, a second template importing
torch while the audit runs delayed the first replay by seconds).
"""
from __future__ import annotations

import copy
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nora.templates import (POOL, REPLAY_PRELOAD, REPLAY_SEEDS, ReplicaError, Template,
                            abort_replica, warm)
from nora.analysis.verify_audit import recorded_seed
from nora.analysis.verify_records import Finding, RunRecords, finding, load_records

__all__ = ["plan_segments", "replay_segment", "run_segments", "segments_of",
           "warm_templates"]

Segment = tuple[int, int]


def segments_of(rec: RunRecords) -> list[Segment]:
    """``[start, end)`` step ranges between consecutive kept checkpoints."""
    first, total = rec.first_step, rec.total_steps
    cuts = [n for n in rec.checkpoints() if first < n < total]
    bounds = [first, *cuts, total]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def plan_segments(segments: list[Segment], budget: float, seed: int,
                  startable: set[int]) -> tuple[list[Segment], int]:
    """Segments to replay within ``budget`` of all steps, and how many were drawn at random.

    With room for three or more segments, the first and the last are always replayed and
    the rest drawn at random; with less room every pick is random, so the guarantee of the
    sample (``1 - (1 - p)^n`` over the random picks) never counts a fixed choice.
    """
    total = sum(b - a for a, b in segments)
    room = math.floor(budget * total + 1e-9)
    pool = [s for s in segments if s[0] in startable]
    rng = np.random.default_rng(seed)
    order = [pool[i] for i in rng.permutation(len(pool))]
    chosen: list[Segment] = []
    fixed = [pool[0], pool[-1]] if len(pool) >= 3 else []
    if fixed and sum(b - a for a, b in fixed) + min(b - a for a, b in pool[1:-1]) <= room:
        chosen = list(dict.fromkeys(fixed))
    used = sum(b - a for a, b in chosen)
    drawn = 0
    for seg in order:
        if seg not in chosen and used + seg[1] - seg[0] <= room:
            chosen.append(seg)
            used += seg[1] - seg[0]
            drawn += 1
    return sorted(chosen), drawn


# --------------------------------------------------------------------------- one segment
def segment_job(rec: RunRecords, seg: Segment, out: Path) -> dict[str, Any]:
    """What a replica needs to replay ``seg``: a config dict and the seam settings to start with."""
    from nora.config.compose import compose_dict

    a, b = seg
    m = rec.manifest
    data = copy.deepcopy(m["config"])
    data["mode"] = compose_dict(["modes=pipeline"])["mode"]
    data["violation"] = {**data["violation"], "name": "none"}
    data["device"] = str((m.get("env") or {}).get("device") or "cpu")
    data["durable"] = False             # a replica's run directory is scratch: no fsyncs
    settings = dict(m.get("seams_at_start") or {})
    settings["seed"] = recorded_seed(m)
    changes = []
    for c in m.get("config_changes") or []:
        if c.get("event") == "startup" or c["step"] >= a or a == rec.first_step:
            changes.append(c)
        elif c["key"].startswith("seams."):          # not in a checkpoint: start with it
            settings[c["key"][6:]] = c["new"]
    data["replay_changes"] = changes
    if a > rec.first_step:
        data["resume_from"] = str((rec.run_dir / rec.checkpoints()[a][0]).resolve())
    if b < rec.total_steps:
        data["train"] = {**data["train"], "max_steps": b}
    return {"config": data, "settings": settings, "out": str(out)}


def replay_segment(_seed: Any, job: dict[str, Any]) -> dict[str, Any]:
    """Runs in the replica: train the segment with the recorded config into ``job["out"]``."""
    from nora.config.compose import validate
    from nora.runner import train

    train(validate(job["config"]), run_dir=job["out"], start_settings=job["settings"])
    return {"done": True}


def compare_segment(rec: RunRecords, seg: Segment, out: Path) -> dict[str, Any]:
    """Every replayed step against the record: the first step whose loss bits or parameter
    hash differ, and the tensors whose leaves differ there."""
    a, b = seg
    rep = load_records(out)
    for s in range(a, b):
        orig, again = rec.steps.get(s, {}), rep.steps.get(s)
        if again is None:
            return {"first_divergent_step": s, "tensors": [],
                    "why": f"the replay recorded no step {s}"}
        loss_same = orig.get("loss_bits") == again.get("loss_bits")
        params_same = orig.get("param_hash") == again.get("param_hash")
        if loss_same and params_same:
            continue
        mine, theirs = rec.leaves.get(s, {}), rep.leaves.get(s, {})
        names = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        why = [] if loss_same else [f"loss {orig.get('loss')!r} recorded, {again.get('loss')!r} "
                                     "replayed"]
        if not params_same:
            why.append(f"parameters differ ({len(names)} tensor(s))")
        return {"first_divergent_step": s, "tensors": names, "why": "; ".join(why)}
    return {"first_divergent_step": None, "tensors": [], "why": ""}


# --------------------------------------------------------------------------- dispatch
def warm_templates() -> None:
    """Start the replay template now without waiting for it (none in a replica)."""
    warm(REPLAY_SEEDS, REPLAY_PRELOAD)


def _job_base(rec: RunRecords) -> dict[str, Any]:
    threads = (rec.manifest.get("env") or {}).get("torch_threads") or torch.get_num_threads()
    return {"module": __name__, "qualname": "replay_segment", "file": __file__,
            "cwd": os.getcwd(), "sys_path": list(sys.path),
            "env": dict(os.environ), "threads": int(threads), "cudnn_benchmark": False}


def _outcome(rec: RunRecords, seg: Segment, tmp: str, i: int,
             done: dict[str, Any] | None) -> tuple[dict[str, Any], Finding | None]:
    """A finished (or killed: ``done`` None) replay against the record."""
    if done is None or done["status"] != 0:
        err = Path(tmp, f"{i}.err")
        tb = err.read_text(errors="replace")[-1500:] if err.exists() else \
            ("timed out" if done is None else f"exit status {done['status']}")
        return ({"status": "error", "first_divergent_step": None, "tensors": []},
                finding("segment replay", f"steps {seg[0]}-{seg[1] - 1} could not be "
                        f"replayed: {tb}", step=seg[0]))
    cmp = compare_segment(rec, seg, Path(tmp, f"seg{i}"))
    res = dict(cmp, status="diverged" if cmp["why"] else "reproduced")
    if not cmp["why"]:
        return res, None
    start = "scratch" if seg[0] == rec.first_step else f"checkpoint step_{seg[0]}.pt"
    return res, finding("segment replay", f"step {cmp['first_divergent_step']} does not "
                        f"reproduce (replayed from {start}): {cmp['why']}",
                        step=cmp["first_divergent_step"], file="metrics.jsonl",
                        tensors=cmp["tensors"][:20])


def _prepare(rec: RunRecords, base: dict[str, Any], tmp: str, i: int,
             seg: Segment) -> dict[str, Any]:
    """The template's job line for segment ``i``, its arguments written beside it."""
    import pickle

    files = {k: os.path.join(tmp, f"{i}.{k}") for k in ("out", "err", "log")}
    payload = os.path.join(tmp, f"{i}.payload")
    job = segment_job(rec, seg, Path(tmp, f"seg{i}"))
    Path(payload).write_bytes(pickle.dumps((None, (job,), {})))
    return dict(base, payload=payload, **files)


def _launch(t: Template, line: dict[str, Any], seg: Segment, timeout: float) -> int:
    """Send a prepared segment to the template; the pid of its replica."""
    t.send(line)
    started = t.read(time.monotonic() + timeout, "started")
    if started is None:
        raise ReplicaError(f"the replay of steps {seg[0]}-{seg[1] - 1} did not start")
    return int(started["pid"])


def run_segments(rec: RunRecords, plan: list[Segment], workers: int,
                 timeout: float) -> tuple[list[dict[str, Any]], list[Finding]]:
    """Replay ``plan``, ``workers`` segments at a time; one result per segment, in order."""
    results: dict[Segment, dict[str, Any]] = {}
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="nora-verify-") as tmp, POOL.lock:
        base = _job_base(rec)
        (t,) = POOL.get(REPLAY_SEEDS, REPLAY_PRELOAD)
        queue = [(i, seg, _prepare(rec, base, tmp, i, seg)) for i, seg in enumerate(plan)]
        t.wait_ready()
        running: dict[int, tuple[int, Segment, float, float]] = {}   # pid -> job
        try:
            while queue or running:
                while queue and len(running) < workers:
                    i, seg, line = queue.pop(0)
                    pid = _launch(t, line, seg, timeout)
                    running[pid] = (i, seg, time.monotonic() + timeout, time.perf_counter())
                first = min(running.values(), key=lambda job: job[2])[2]
                done = t.read(first, "done")
                if done is None:                  # the earliest deadline passed: kill it
                    pid = next(p for p, job in running.items() if job[2] == first)
                    abort_replica(t, pid)
                elif done.get("pid") not in running:
                    continue                      # not one of these replays
                else:
                    pid = done["pid"]
                i, seg, _, t0 = running.pop(pid)
                res, bad = _outcome(rec, seg, tmp, i, done)
                results[seg] = {"start": seg[0], "end": seg[1], "steps": seg[1] - seg[0],
                                "seconds": round(time.perf_counter() - t0, 3), **res}
                findings += [bad] if bad else []
                if t.proc.poll() is not None:     # aborting lost the template
                    raise ReplicaError("the replay template stopped answering after a "
                                       "replay timed out")
        finally:
            for pid in running:
                abort_replica(t, pid)
    return [results[s] for s in plan], findings
