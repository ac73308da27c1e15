"""The static audit of a recorded run: everything that can be checked without training.

Each ``check_*`` function checks one property and returns its findings: the environment
against the manifest, every checkpoint's checksum, the step records, the chain (each kept
checkpoint's parameter hash equals the step record at its step), each checkpoint's parts,
and the hyperparameters inside each checkpoint against the recorded config and tracked
changes, which is where an untracked mid-run change shows, without replaying anything.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from nora.checkpoint import file_sha256
from nora.hashing import record_digest, tree_root
from nora.analysis.verify_checkpoints import audit_checkpoints
from nora.analysis.verify_records import Finding, RunRecords, finding, step_of

__all__ = ["Audit", "run_audit", "recorded_seed"]


@dataclass
class Audit:
    """What the static audit found: one entry per check, findings, reasons it cannot go on."""

    checks: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    replayable: set[int] = field(default_factory=set)   # checkpoint steps a segment can start at

    def add(self, name: str, found: list[Finding], detail: str) -> None:
        self.findings += found
        self.checks.append({"check": name, "passed": not found, "detail": detail,
                            "findings": len(found)})


def _bits(x: Any) -> str | None:
    try:
        return struct.pack(">f", float(x)).hex()
    except (TypeError, ValueError, OverflowError):
        return None


def recorded_seed(manifest: dict[str, Any]) -> int | None:
    """The seed a run trained with, if the record has it (a chosen seed or recorded entropy)."""
    seeds, start = manifest.get("seeds") or {}, manifest.get("seams_at_start") or {}
    for value in (start.get("seed"), seeds.get("effective_seed"), seeds.get("entropy_seed")):
        if isinstance(value, int):
            return value
    return None


# --------------------------------------------------------------------------- environment
def check_environment(rec: RunRecords, audit: Audit) -> None:
    """Torch version and device type must match to replay bit for bit; threads are applied."""
    env = rec.manifest.get("env") or {}
    here_torch = torch.__version__
    there_torch = (env.get("versions") or {}).get("torch")
    reasons = []
    if there_torch != here_torch:
        reasons.append(f"torch version: recorded {there_torch!r}, here {here_torch!r}")
    device = str(env.get("device") or "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            reasons.append(f"device: recorded {device!r} ({env.get('cuda_device_name')}), "
                           "here no CUDA device")
        else:
            name = torch.cuda.get_device_name(0)
            if env.get("cuda_device_name") not in (None, name):
                reasons.append(f"device: recorded {env.get('cuda_device_name')!r}, here {name!r}")
    ddp = rec.config.get("ddp") or {}
    if ddp.get("world_size", 1) > 1 and not ddp.get("emulate", False):
        reasons.append(f"DDP run (world_size={ddp['world_size']}): a DDP run cannot be resumed "
                       "from its checkpoints yet, so its segments cannot be replayed")
    threads = env.get("torch_threads")
    if threads is not None and threads != torch.get_num_threads():
        audit.notes.append(f"torch threads: recorded {threads}, this process has "
                           f"{torch.get_num_threads()}; replays apply the recorded count")
    for lib, ver in sorted((env.get("versions") or {}).items()):
        if lib in ("torch", "nora") or ver is None:
            continue
        try:
            from importlib import metadata
            here = metadata.version(lib)
        except Exception:  # noqa: BLE001 - a missing package is a difference like any other
            here = None
        if here != ver:
            audit.notes.append(f"{lib}: recorded {ver}, here {here} (may change the bits)")
    audit.unverifiable += reasons
    audit.checks.append({"check": "environment", "passed": not reasons,
                         "detail": "; ".join(reasons) or
                         f"torch {here_torch}, device {device} as recorded", "findings": 0})


# --------------------------------------------------------------------------- files and lines
def check_checksums(rec: RunRecords, audit: Audit) -> set[int]:
    """Every recorded checkpoint exists with its recorded sha256; returns intact steps."""
    found, intact = [], set()
    recorded = rec.manifest.get("checkpoints") or {}
    for rel, sha in recorded.items():
        path, step = rec.run_dir / rel, step_of(rel)
        if not path.is_file():
            found.append(finding("checksums", f"{rel} is recorded but missing", step=step,
                                 file=rel))
        elif file_sha256(path) != sha:
            found.append(finding("checksums", f"{rel} was altered after the run: its sha256 "
                                 "is not the recorded one", step=step, file=rel,
                                 recorded=sha))
        elif step is not None:
            intact.add(step)
    for path in sorted((rec.run_dir / "checkpoints").glob("step_*.pt")):
        rel = str(path.relative_to(rec.run_dir))
        if rel not in recorded:
            found.append(finding("checksums", f"{rel} is not in the manifest's checkpoints",
                                 step=step_of(rel), file=rel))
    audit.add("checksums", found, f"{len(recorded)} checkpoint file(s) recorded"
              + ("" if found else ", all intact"))
    return intact


def check_step_records(rec: RunRecords, audit: Audit) -> None:
    """Steps complete and in order, each line unaltered (digest) and its hash explained by
    its leaves."""
    found = list(rec.findings)
    status = rec.manifest.get("status")
    if status != "done":
        found.append(finding("step records", f"the run ended {status!r}, not 'done': only a "
                             "finished run can be verified", file="manifest.json"))
    steps = sorted(rec.steps)
    if steps:
        gaps = sorted(set(range(steps[0], steps[-1] + 1)) - set(steps))
        if gaps:
            found.append(finding("step records", f"metrics.jsonl lacks step(s) {gaps[:10]}",
                                 step=gaps[0], file="metrics.jsonl"))
    else:
        found.append(finding("step records", "metrics.jsonl holds no step record",
                             file="metrics.jsonl"))
    for s in steps:
        r, line = rec.steps[s], rec.lines[s]
        where = f"metrics.jsonl line {line} (step {s})"
        if _bits(r.get("loss")) != r.get("loss_bits"):
            found.append(finding("step records", f"{where}: loss {r.get('loss')!r} does not "
                                 f"have the recorded bits {r.get('loss_bits')!r} (edited)",
                                 step=s, file="metrics.jsonl"))
        elif s in rec.digests and record_digest(r) != rec.digests[s]:
            found.append(finding("step records", f"{where} was altered after the run: it "
                                 "does not match the digest written with it", step=s,
                                 file="metrics.jsonl"))
        if s in rec.leaves and tree_root(rec.leaves[s]) != r.get("param_hash"):
            found.append(finding("step records", f"state/step_hashes.jsonl step {s}: the "
                                 "leaves do not hash to the recorded param_hash", step=s,
                                 file="state/step_hashes.jsonl"))
    audited = rec.config.get("train", {}).get("checkpoint_every", 0) > 0
    if audited and steps and any(s not in rec.leaves for s in steps):
        miss = [s for s in steps if s not in rec.leaves]
        found.append(finding("step records", f"no parameter leaves for step(s) {miss[:10]}",
                             step=miss[0], file="state/step_hashes.jsonl"))
    audit.add("step records", found, f"{len(steps)} step record(s)")


# --------------------------------------------------------------------------- checkpoints
def check_checkpoints(rec: RunRecords, intact: set[int], audit: Audit) -> None:
    """Chain, completeness and hyperparameters of every intact kept checkpoint."""
    found = audit_checkpoints(rec, intact)
    audit.replayable |= found.replayable
    kept = len(rec.checkpoints())
    audit.add("chain", found.chain, f"{kept} kept checkpoint(s) linked to the step records")
    audit.add("checkpoint parts", found.parts, "every part a resume needs")
    audit.add("hyperparameters", found.hyper,
              "LR, scheduler position, scaler and data position vs config + tracked changes")


def check_seed(rec: RunRecords, audit: Audit) -> None:
    found = []
    if recorded_seed(rec.manifest) is None:
        found.append(finding("seeds", "the run's seed is not recorded (seed=null without "
                             "recorded entropy): no replay can draw the same numbers",
                             file="manifest.json"))
    audit.add("seeds", found, "seed recorded")


def run_audit(rec: RunRecords, after_environment: Callable[[Audit], None] | None = None
              ) -> Audit:
    """Every static check, in order; ``after_environment`` runs once the environment is
    checked (to start replay interpreters while the rest of the audit reads checkpoints)."""
    audit = Audit()
    check_environment(rec, audit)
    if after_environment is not None:
        after_environment(audit)
    intact = check_checksums(rec, audit)
    check_step_records(rec, audit)
    check_seed(rec, audit)
    check_checkpoints(rec, intact, audit)
    return audit
