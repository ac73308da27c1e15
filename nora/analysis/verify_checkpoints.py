"""The static audit's checks inside each kept checkpoint: the chain (its parameters hash to
the step record at its step), its parts, and the hyperparameters in it against the recorded
config and tracked changes (where an untracked mid-run change shows, with its step range).

Checkpoints are read with ``nora.analysis.ckpt_read.read_state`` (the C unpickler, a strict
allowlist, tensors as views of their storages): what ``torch.load(weights_only=True)``
returns, at a tenth of its cost, so auditing a hundred checkpoints takes a fraction of a
second.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nora.analysis.ckpt_read import read_state
from nora.analysis.verify_records import Finding, RunRecords, finding
from nora.checkpoint import audit as missing_parts
from nora.hashing import tensor_hashes, tree_root

__all__ = ["CheckpointFindings", "audit_checkpoints"]


@dataclass
class CheckpointFindings:
    """Findings per check, and the checkpoint steps a segment can start at."""

    chain: list[Finding] = field(default_factory=list)
    parts: list[Finding] = field(default_factory=list)
    hyper: list[Finding] = field(default_factory=list)
    replayable: set[int] = field(default_factory=set)


def _expected_lrs(rec: RunRecords, n: int) -> set[float]:
    """The base LR after ``n`` steps by the recorded config and tracked changes (a change
    recorded at step ``n`` itself may or may not be in a checkpoint taken then)."""
    lr = float(rec.config["train"]["lr"])
    changes = sorted((c for c in rec.manifest.get("config_changes") or []
                      if c.get("key") == "train.lr"), key=lambda c: c["step"])
    at_n = None
    for c in changes:
        if c["step"] < n:
            lr = float(c["new"])
        elif c["step"] == n:
            at_n = float(c["new"])
    return {lr, lr if at_n is None else at_n}


def _scaler_expected(rec: RunRecords, n: int) -> bool:
    k = rec.manifest.get("seams_at_start") or {}
    on = bool(k.get("precision.scaler"))
    for c in rec.manifest.get("config_changes") or []:
        if c.get("key") == "seams.precision.scaler" and c["step"] <= n:
            on = bool(c["new"])
    return on


def _hyper(rec: RunRecords, n: int, rel: str, state: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    sched, opt = state.get("scheduler"), state.get("optimizer")
    if isinstance(sched, dict):
        base = (sched["base_lrs"][0] if sched.get("base_lrs") else sched.get("base_lr"))
        expected = _expected_lrs(rec, n)
        if base is not None and float(base) not in expected:
            out.append(finding("hyperparameters", f"{rel}: train.lr is {float(base)!r} but the "
                               f"recorded config and tracked changes give {min(expected)!r}",
                               step=n, file=rel, key="train.lr", actual=float(base),
                               expected=sorted(expected)))
        if "last_epoch" in sched and sched["last_epoch"] != n:
            out.append(finding("hyperparameters", f"{rel}: scheduler position "
                               f"{sched['last_epoch']} != {n} steps", step=n, file=rel,
                               key="scheduler.last_epoch"))
    step_lr = rec.steps.get(n - 1, {}).get("lr")
    if isinstance(opt, dict) and step_lr is not None:
        for i, group in enumerate(opt.get("param_groups", [])):
            if float(group.get("lr", step_lr)) != float(step_lr):
                out.append(finding("hyperparameters", f"{rel}: param group {i} LR "
                                   f"{group.get('lr')!r} != {step_lr!r} recorded at step "
                                   f"{n - 1}", step=n, file=rel, key=f"param_groups.{i}.lr"))
    scaler = state.get("scaler")
    if isinstance(scaler, dict):
        enabled = bool(scaler) and scaler.get("enabled", True) is not False
        if enabled != _scaler_expected(rec, n):
            out.append(finding("hyperparameters", f"{rel}: the loss scaler is "
                               f"{'on' if enabled else 'off'}, the record says otherwise",
                               step=n, file=rel, key="seams.precision.scaler"))
    pos = state.get("position") or {}
    at = pos.get("step", pos.get("iteration_index"))
    if at is not None and at != n:
        out.append(finding("hyperparameters", f"{rel}: data position at step {at}, not {n}",
                           step=n, file=rel, key="position"))
    return out


def _untracked(found: list[Finding], agreed: list[int]) -> list[Finding]:
    """Turn the first LR disagreement into a step range: after the last agreeing checkpoint."""
    lr = [f for f in found if f["evidence"].get("key") == "train.lr"]
    if not lr:
        return found
    first = lr[0]
    since = max([s for s in agreed if s < first["step"]], default=0)
    first["message"] += (f": an untracked change of train.lr between step {since} and step "
                         f"{first['step']}" + (f" (and {len(lr) - 1} later checkpoint(s) "
                                               "disagree too)" if len(lr) > 1 else ""))
    first["evidence"]["step_range"] = [since, first["step"]]
    return [f for f in found if f not in lr[1:]]


def audit_checkpoints(rec: RunRecords, intact: set[int]) -> CheckpointFindings:
    """Chain, completeness and hyperparameters of every intact kept checkpoint."""
    out, agreed = CheckpointFindings(), []
    for n, (rel, _) in rec.checkpoints().items():
        if n not in intact:
            continue
        try:
            state = read_state(rec.run_dir / rel)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
            out.chain.append(finding("chain", f"{rel} cannot be read: {exc}", step=n, file=rel))
            continue
        lacks = missing_parts(state)
        if lacks:
            out.parts.append(finding("checkpoint parts", f"{rel} lacks {', '.join(lacks)}: a "
                                     "resume from it cannot continue the run", step=n,
                                     file=rel, missing=lacks))
        record = rec.steps.get(n - 1)
        model = state.get("model")
        if record is None or not isinstance(model, dict):
            out.chain.append(finding("chain", f"{rel}: no step record at step {n - 1} or no "
                                     "model to link it to", step=n, file=rel))
        else:
            leaves = tensor_hashes(model)
            if tree_root(leaves) != record.get("param_hash"):
                known = rec.leaves.get(n - 1, {})
                names = sorted(k for k in set(leaves) | set(known)
                               if leaves.get(k) != known.get(k))
                out.chain.append(finding("chain", f"{rel}: its parameters do not hash to the "
                                         f"param_hash recorded at step {n - 1}", step=n,
                                         file=rel, tensors=names))
        found = _hyper(rec, n, rel, state)
        out.hyper += found
        if not found:
            agreed.append(n)
        if not lacks and not found:
            out.replayable.add(n)
    out.hyper = _untracked(out.hyper, agreed)
    return out
