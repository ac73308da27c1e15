"""What a run directory recorded for an audit, read once and checked line by line.

``metrics.jsonl`` holds one ``{"kind": "step", ...}`` record per step (loss bits, parameter
hash); ``state/step_hashes.jsonl`` the per-tensor leaves under each step's parameter hash
plus a digest of the step's metrics line, written as the run trained. Reading never trusts
a line: a line that does not parse, a step recorded twice or missing, is a finding.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nora.errors import ConfigError

__all__ = ["Finding", "RunRecords", "finding", "load_records", "step_of"]

Finding = dict[str, Any]
_STEP_NAME = re.compile(r"^step_(\d+)\.pt$")


def finding(check: str, message: str, *, step: int | None = None, file: str | None = None,
            tensors: list[str] | None = None, **evidence: Any) -> Finding:
    """One problem the verifier found: which check, which step, which file or tensors."""
    return {"check": check, "step": step, "file": file, "tensors": list(tensors or []),
            "message": message, "evidence": evidence}


def step_of(name: str) -> int | None:
    """The step count of a kept checkpoint ``step_<n>.pt`` (None for ``last.pt`` etc.)."""
    m = _STEP_NAME.match(Path(name).name)
    return int(m.group(1)) if m else None


@dataclass
class RunRecords:
    """A run directory's manifest and per-step records, with what was wrong reading them."""

    run_dir: Path
    manifest: dict[str, Any]
    steps: dict[int, dict[str, Any]] = field(default_factory=dict)
    lines: dict[int, int] = field(default_factory=dict)          # step -> line number
    leaves: dict[int, dict[str, str]] = field(default_factory=dict)
    digests: dict[int, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    @property
    def first_step(self) -> int:
        return min(self.steps) if self.steps else 0

    @property
    def total_steps(self) -> int:
        """Steps this run trained (one past the last recorded step)."""
        return max(self.steps) + 1 if self.steps else 0

    def checkpoints(self) -> dict[int, tuple[str, str]]:
        """Kept checkpoints by step count: ``{n: (relative path, recorded sha256)}``."""
        out = {}
        for rel, sha in (self.manifest.get("checkpoints") or {}).items():
            n = step_of(rel)
            if n is not None:
                out[n] = (rel, sha)
        return dict(sorted(out.items()))


def load_records(run_dir: str | Path) -> RunRecords:
    """Read a run directory; ConfigError if it is not one (no readable manifest)."""
    run_dir = Path(run_dir)
    path = run_dir / "manifest.json"
    if not run_dir.is_dir():
        raise ConfigError(f"verify: run directory {str(run_dir)!r} does not exist")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"verify: {str(run_dir)!r} has no manifest.json; expected a run "
                          "directory written by `nora train` (runs/<timestamp>/)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"verify: cannot read {str(path)!r}: {exc}") from None
    if not isinstance(manifest, dict) or "config" not in manifest:
        raise ConfigError(f"verify: {str(path)!r} is not a NORA manifest (no 'config')")
    rec = RunRecords(run_dir, manifest)
    _read_metrics(rec)
    _read_leaves(rec)
    return rec


def _lines(path: Path) -> list[tuple[int, Any]]:
    out = []
    for no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((no, json.loads(line)))
        except json.JSONDecodeError:
            out.append((no, None))
    return out


def _read_metrics(rec: RunRecords) -> None:
    path = rec.run_dir / "metrics.jsonl"
    if not path.is_file():
        rec.findings.append(finding("step records", "metrics.jsonl is missing",
                                    file="metrics.jsonl"))
        return
    for no, obj in _lines(path):
        if not isinstance(obj, dict):
            rec.findings.append(finding("step records", f"metrics.jsonl line {no} does not "
                                        "parse as a JSON record", file="metrics.jsonl", line=no))
            continue
        if obj.get("kind") != "step":
            continue
        step = obj.get("step")
        if not isinstance(step, int) or step in rec.steps:
            rec.findings.append(finding("step records", f"metrics.jsonl line {no}: step "
                                        f"{step!r} is not a new step number",
                                        step=step if isinstance(step, int) else None,
                                        file="metrics.jsonl", line=no))
            continue
        rec.steps[step] = obj
        rec.lines[step] = no


def _read_leaves(rec: RunRecords) -> None:
    path = rec.run_dir / "state" / "step_hashes.jsonl"
    if not path.is_file():
        return
    names: list[str] | None = None
    for no, obj in _lines(path):
        if isinstance(obj, dict) and isinstance(obj.get("names"), list):
            names = [str(n) for n in obj["names"]]
            continue
        ok = (isinstance(obj, dict) and isinstance(obj.get("step"), int) and names is not None
              and isinstance(obj.get("leaves"), list) and len(obj["leaves"]) == len(names))
        if not ok:
            rec.findings.append(finding("step records", f"state/step_hashes.jsonl line {no} is "
                                        "not a leaf record", file="state/step_hashes.jsonl",
                                        line=no))
            continue
        rec.leaves[obj["step"]] = dict(zip(names, (str(x) for x in obj["leaves"])))
        rec.digests[obj["step"]] = str(obj.get("record"))
