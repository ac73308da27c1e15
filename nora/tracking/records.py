"""A finished run as a tracker sees it, read from the run directory alone.

Both trackers log the same view: the flattened config (params), the per-step and
per-evaluation numbers (metrics with their step), the outcome, findings, fingerprint and
verdicts (tags), and the record files (artifacts). Reading the directory, not the live
``RunResult``, means any run can be logged later, also one trained elsewhere.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nora.errors import ConfigError
from nora.records import read_json, read_jsonl

__all__ = ["RunView", "TrackingError", "flatten", "read_run"]

ARTIFACT_FILES = ("manifest.json", "metrics.jsonl", "norms/agent_decisions.jsonl",
                  "norms/agent_metrics.json", "norms/reproducibility_metrics.json",
                  "state/tensors.json")
_SKIP_STEP_KEYS = frozenset({"kind", "step", "epoch"})


class TrackingError(ConfigError):
    """A run cannot be logged: no records, or the tracker's package is missing (bad usage:
    the CLI exits 2)."""


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"train.lr": "0.003", ...}``; lists become JSON text."""
    out: dict[str, str] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    key = prefix[:-1]
    if isinstance(data, (list, tuple)):
        out[key] = json.dumps(data, default=str)
    else:
        out[key] = "None" if data is None else str(data)
    return out


def _numbers(record: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """The finite numbers of one step/eval record; per-group LRs as ``lr/group<i>``."""
    for key, value in record.items():
        if key in _SKIP_STEP_KEYS or isinstance(value, bool):
            continue
        if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
            for i, v in enumerate(value):
                if math.isfinite(v):
                    yield f"{key}/group{i}", float(v)
        elif isinstance(value, (int, float)) and math.isfinite(value):
            yield key, float(value)


def _verdict(value: Any) -> bool:
    return bool(value.get("passed")) if isinstance(value, Mapping) else bool(value)


@dataclass
class RunView:
    """What a tracker logs of one run (plain data)."""

    run_dir: Path
    name: str
    params: dict[str, str]
    step_metrics: list[tuple[str, float, int]]      # (name, value, step)
    eval_metrics: list[tuple[str, float, int]]
    summary_metrics: dict[str, float]
    tags: dict[str, str]
    decisions: list[dict[str, Any]]
    artifacts: list[Path] = field(default_factory=list)
    status: str = "done"

    @property
    def scalars(self) -> list[tuple[str, float, int]]:
        """Step and eval series, named as both trackers show them (``train/``, ``eval/``)."""
        return ([(f"train/{k}", v, s) for k, v, s in self.step_metrics]
                + [(f"eval/{k}", v, s) for k, v, s in self.eval_metrics])


def _findings_tag(findings: list[Mapping[str, Any]]) -> str:
    parts = [f"{f.get('violation')}({f.get('source', '?')}, {f.get('severity', '?')}"
             f"{', false positive' if f.get('false_positive') else ''})" for f in findings]
    return "; ".join(parts) if parts else "none"


def read_run(run_dir: str | Path, *, extra_tags: Mapping[str, Any] | None = None) -> RunView:
    """Read one run directory; raises ``TrackingError`` when it holds no manifest."""
    rd = Path(run_dir)
    if not (rd / "manifest.json").is_file():
        raise TrackingError(f"run_dir {str(rd)!r} has no manifest.json: not a NORA run "
                            "directory (expected manifest.json, metrics.jsonl, norms/)")
    manifest = read_json(rd / "manifest.json")
    repro_path = rd / "norms" / "reproducibility_metrics.json"
    repro = read_json(repro_path) if repro_path.is_file() else {}
    agent_path = rd / "norms" / "agent_metrics.json"
    agent = read_json(agent_path) if agent_path.is_file() else {}
    steps, evals = [], []
    for rec in read_jsonl(rd / "metrics.jsonl"):
        target = evals if rec.get("kind") == "eval" else steps
        step = int(rec.get("step", 0))
        target.extend((k, v, step) for k, v in _numbers(rec))
    config = manifest.get("config", {})
    summary = {f"nora.{k}": float(v) for k, v in {**agent, **repro}.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(v)}
    findings = list(repro.get("findings") or [])
    verdicts = {k: _verdict(v) for k, v in (repro.get("verdicts") or {}).items()}
    tags = {"nora.run_dir": str(rd.resolve()), "nora.status": str(manifest.get("status")),
            "nora.outcome": str(repro.get("outcome", manifest.get("outcome"))),
            "nora.expected_outcome": str(repro.get("expected_outcome")),
            "nora.fingerprint": str(repro.get("fingerprint", manifest.get("fingerprint"))),
            "nora.findings": _findings_tag(findings), "nora.findings_count": str(len(findings)),
            "nora.violations_injected": ",".join(repro.get("violations_injected") or [])
            or "none",
            "nora.verdicts_passed": ("none" if not verdicts
                                     else str(all(verdicts.values())).lower()),
            "nora.git_commit": str((manifest.get("env") or {}).get("git_commit"))}
    for group in ("mode", "regime", "violation", "trainer"):
        node = config.get(group)
        if isinstance(node, Mapping):
            tags[f"nora.{group}"] = str(node.get("name"))
    tags.update({f"nora.verdict.{k}": "passed" if ok else "failed"
                 for k, ok in verdicts.items()})
    tags.update({k: str(v) for k, v in (extra_tags or {}).items()})
    artifacts = [rd / f for f in ARTIFACT_FILES if (rd / f).is_file()]
    return RunView(run_dir=rd, name=rd.name, params=flatten(config), step_metrics=steps,
                   eval_metrics=evals, summary_metrics=summary, tags=tags,
                   decisions=read_jsonl(rd / "norms" / "agent_decisions.jsonl"),
                   artifacts=artifacts, status=str(manifest.get("status", "done")))
