"""The session report: case records in, tables a person reads and a gate CI trusts out.

A *case record* is one plain dict per training run of a test case (or one per case that
only recorded metrics or verdicts): JSON-able, so it can cross process boundaries (xdist
workers, sharded sessions) unchanged. ``write_session_report`` turns a list of them into
``summary.json``, ``results.csv``, ``agent_decisions.jsonl`` and ``report.md``; the pytest
plugin and ``python -m nora report`` are two callers of the same functions.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from nora.reader import read_decisions, read_manifest, read_repro_metrics
from nora.records import write_json, write_text

__all__ = ["RESULT_COLUMNS", "SessionReport", "case_record", "gate_failures", "matrix_table",
           "records_frame", "records_from_run_dirs", "terminal_text", "write_session_report"]

RESULT_COLUMNS = [
    "test_id", "mode", "regime", "violation", "seed", "expected_outcome", "outcome",
    "as_expected", "decisions", "decision_actions", "detection_rate_pct",
    "time_to_detection_sec", "first_detection_step", "false_positives", "fingerprint",
    "verdicts", "verdicts_passed", "duration_sec", "trainer", "run", "status", "in_scope",
    "test_outcome", "worker", "case", "run_dir", "error",
]
_SHORT = {"clean": "ok", "halted": "H", "fixed": "F", "tolerated": "T", "logged": "L",
          "undetected": "U", "crashed": "X", None: "-"}
_INT_COLUMNS = ("seed", "run", "decisions", "first_detection_step", "false_positives")
LEGEND = ("ok clean  H halted  F fixed  T tolerated  L logged  U undetected  X crashed  "
          "! not as expected")


def _verdict(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {"passed": bool(value.get("passed")), "detail": str(value.get("detail", ""))}
    return {"passed": bool(value), "detail": ""}


def case_record(run_dir: str | Path | None, *, test_id: str, case: str = "", run: int = 0,
                seed: int | None = None, duration_sec: float | None = None,
                worker: str = "main", verdicts: Mapping[str, Any] | None = None,
                metrics: Mapping[str, Any] | None = None, error: str | None = None,
                spec: Mapping[str, Any] | None = None,
                relative_to: str | Path | None = None) -> dict[str, Any]:
    """One record from a run directory as the core wrote it (manifest, norms/*).

    ``spec`` (mode, regime, violation, trainer, seed) fills in what a run that failed
    before writing its records cannot tell; ``verdicts`` joins the run's own verdicts.
    """
    rd = Path(run_dir) if run_dir is not None else None
    manifest = read_manifest(rd) if rd and (rd / "manifest.json").exists() else {}
    has = (lambda name: rd is not None and (rd / name).exists())
    repro = read_repro_metrics(rd) if has("norms/reproducibility_metrics.json") else {}
    decisions = read_decisions(rd) if has("norms/agent_decisions.jsonl") else []
    cfg, spec = manifest.get("config", {}), dict(spec or {})

    def name(key: str, group: str) -> Any:
        node = cfg.get(group)
        return node.get("name") if isinstance(node, Mapping) else spec.get(key)

    all_verdicts = {k: _verdict(v) for k, v in (repro.get("verdicts") or {}).items()}
    all_verdicts.update({k: _verdict(v) for k, v in (verdicts or {}).items()})
    expected, outcome = repro.get("expected_outcome"), repro.get("outcome")
    violation = name("violation", "violation")
    actions = Counter(d.get("agent_action") for d in decisions)
    shown_dir = rd
    if rd is not None and relative_to is not None:
        shown_dir = Path(os.path.relpath(rd, relative_to))
    return {
        "test_id": test_id, "case": case, "run": run,
        "mode": name("mode", "mode"), "regime": name("regime", "regime"),
        "violation": violation, "trainer": name("trainer", "trainer"),
        "seed": cfg.get("seed", seed) if cfg else seed,
        "expected_outcome": expected, "outcome": outcome,
        "as_expected": None if outcome is None else outcome == expected,
        "in_scope": bool(violation and violation != "none"
                         and expected not in (None, "undetected", "clean")),
        "status": manifest.get("status", "failed" if error else None),
        "decisions": len(decisions),
        "decision_actions": ";".join(f"{a}:{n}" for a, n in sorted(actions.items())),
        "detection_rate_pct": repro.get("detection_rate_pct"),
        "time_to_detection_sec": repro.get("avg_time_to_detection_sec"),
        "first_detection_step": repro.get("first_detection_step"),
        "false_positives": repro.get("false_positives"),
        "fingerprint": repro.get("fingerprint", manifest.get("fingerprint")),
        "verdicts": all_verdicts,
        "verdicts_passed": (all(v["passed"] for v in all_verdicts.values())
                            if all_verdicts else None),
        "duration_sec": duration_sec if duration_sec is not None
        else manifest.get("duration_sec"),
        "test_outcome": None, "worker": worker,
        "run_dir": str(shown_dir) if shown_dir is not None else None,
        "error": error,
        "metrics": dict(metrics or {}),
        "agent_decisions": decisions,
    }


def records_from_run_dirs(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Records for plain run directories (``python -m nora train`` output), one per run."""
    return [case_record(p, test_id=str(p), case=Path(p).name) for p in paths
            if (Path(p) / "manifest.json").exists()]


def sort_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Deterministic order, whatever order workers delivered them in."""
    return sorted((dict(r) for r in records),
                  key=lambda r: (r["test_id"], r.get("run") or 0, str(r.get("seed"))))


def records_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per record, ``RESULT_COLUMNS`` first, user metrics as ``metric.<name>``."""
    rows = []
    for r in sort_records(records):
        row = {c: r.get(c) for c in RESULT_COLUMNS}
        row["verdicts"] = ";".join(f"{k}={'pass' if v['passed'] else 'fail'}"
                                   for k, v in sorted((r.get("verdicts") or {}).items()))
        for k, v in sorted((r.get("metrics") or {}).items()):
            row[f"metric.{k}"] = v if isinstance(v, (int, float, str, bool, type(None))) \
                else json.dumps(v, default=str)
        rows.append(row)
    df = pd.DataFrame(rows, columns=None if rows else RESULT_COLUMNS)
    for col in _INT_COLUMNS:
        df[col] = df[col].astype("Int64")
    return df


def gate_failures(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every reason a record fails the gate: outcome not as expected, an injected in-scope
    violation undetected, a false positive on a clean case, a failed verdict, a crashed run."""
    out = []
    for r in sort_records(records):
        reasons = []
        exp, got = r.get("expected_outcome"), r.get("outcome")
        if got == "crashed":
            reasons.append(f"crashed: {r.get('error') or 'the run never finished'}")
        elif r.get("error"):
            reasons.append(f"run failed: {r['error']}")
        if got is not None and got != exp and got != "crashed":
            reasons.append(f"outcome {got}, expected {exp}")
        if (r.get("in_scope") and got not in (None, "crashed")
                and (r.get("detection_rate_pct") or 0) < 100):
            reasons.append(f"injected {r['violation']} went undetected (in scope of "
                           f"{r['mode']})")
        if r.get("violation") == "none" and (r.get("false_positives") or 0) > 0:
            reasons.append(f"clean run raised {r['false_positives']} false positive(s)")
        for name, v in sorted((r.get("verdicts") or {}).items()):
            if not v["passed"]:
                reasons.append(f"verdict {name} failed" + (f": {v['detail']}"
                                                           if v["detail"] else ""))
        for reason in reasons:
            out.append({"test_id": r["test_id"], "seed": r.get("seed"), "run": r.get("run"),
                        "reason": reason})
    return out


def matrix_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame | None:
    """Outcome per violation (rows) and mode/regime (columns); None without matrix cases."""
    rows = [r for r in records if r.get("outcome") and r.get("mode") and r.get("regime")
            and r.get("violation")]
    if not rows:
        return None
    df = pd.DataFrame([{"violation": r["violation"], "mode": r["mode"],
                        "regime": r["regime"][:3], "outcome": r.get("outcome"),
                        "ok": r.get("as_expected") is not False} for r in rows])

    def cell(g: pd.DataFrame) -> str:
        codes = "/".join(sorted({_SHORT.get(o, str(o)) for o in g["outcome"]}))
        return codes + ("" if g["ok"].all() else "!")
    cells = df.groupby(["violation", "mode", "regime"]).apply(cell, include_groups=False)
    return cells.unstack(["mode", "regime"]).fillna("").sort_index(axis=1)


def summarize(records: Sequence[Mapping[str, Any]], *, session: str = "",
              gate: bool = False, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    failures = gate_failures(records)
    outcomes = Counter(r.get("outcome") for r in records if r.get("outcome"))
    return {
        "session": session,
        "written_at": datetime.now().isoformat(timespec="seconds"),
        "cases": len({r["test_id"] for r in records}),
        "runs": sum(1 for r in records if r.get("outcome") or r.get("error")),
        "records": len(records),
        "outcomes": dict(sorted(outcomes.items())),
        "as_expected": sum(1 for r in records if r.get("as_expected") is True),
        "not_as_expected": sum(1 for r in records if r.get("as_expected") is False),
        "crashed": sorted({r["test_id"] for r in records if r.get("outcome") == "crashed"}),
        "decisions": sum(len(r.get("agent_decisions") or []) for r in records),
        "gate": {"enabled": gate, "passed": not failures, "failures": failures},
        **dict(meta or {}),
    }


@dataclass
class SessionReport:
    """What ``write_session_report`` wrote, for callers that print or gate on it."""

    session_dir: Path
    summary: dict[str, Any]
    failures: list[dict[str, Any]]
    paths: dict[str, Path] = field(default_factory=dict)


def _md_table(df: pd.DataFrame) -> str:
    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str:
    g = summary["gate"]
    gate = ("off" if not g["enabled"] else "passed" if g["passed"]
            else f"FAILED ({len(g['failures'])})")
    out = [f"# NORA session {summary['session']}", "",
           f"{summary['cases']} case(s), {summary['runs']} run(s); outcomes as expected: "
           f"{summary['as_expected']}/{summary['as_expected'] + summary['not_as_expected']}; "
           f"agent decisions: {summary['decisions']}; gate: {gate}."
           + (f" Crashed: {len(summary['crashed'])} case(s)." if summary.get("crashed") else ""),
           ""]
    if g["failures"]:
        out += ["## Gate failures", ""]
        out += [f"- `{f['test_id']}` (seed {f['seed']}): {f['reason']}" for f in g["failures"]]
        out.append("")
    matrix = matrix_table(records)
    if matrix is not None:
        flat = matrix.copy()
        flat.columns = [f"{m} {r}" for m, r in flat.columns]
        out += ["## Enforcement matrix", "", _md_table(flat.reset_index()), "", LEGEND, ""]
    df = records_frame(records)
    cols = ["test_id", "seed", "expected_outcome", "outcome", "decisions",
            "detection_rate_pct", "time_to_detection_sec", "fingerprint", "verdicts",
            "duration_sec"] + [c for c in df.columns if c.startswith("metric.")]
    out += ["## Runs", "", _md_table(df[cols]), ""]
    return "\n".join(out)


def terminal_text(report: SessionReport, records: Sequence[Mapping[str, Any]]) -> str:
    """The compact table and the headline, for the terminal summary."""
    s = report.summary
    crashed = f", {len(s['crashed'])} crashed" if s.get("crashed") else ""
    lines = [f"{s['cases']} case(s), {s['runs']} run(s), "
             f"{s['as_expected']} as expected, {s['not_as_expected']} not{crashed}; "
             f"report: {report.paths.get('report.md', report.session_dir)}"]
    matrix = matrix_table(records)
    if matrix is not None:
        lines += ["", matrix.to_string(), LEGEND]
    return "\n".join(lines)


def _link_latest(session_dir: Path) -> None:
    latest = session_dir.parent / "latest"
    tmp = session_dir.parent / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(session_dir.name, tmp)
    os.replace(tmp, latest)


def write_session_report(session_dir: str | Path, records: Iterable[Mapping[str, Any]], *,
                         gate: bool = False, meta: Mapping[str, Any] | None = None,
                         latest: bool = True) -> SessionReport:
    """Write summary.json, results.csv, agent_decisions.jsonl and report.md atomically."""
    session_dir = Path(session_dir)
    session_dir.mkdir(parents=True, exist_ok=True)
    recs = sort_records(records)
    summary = summarize(recs, session=session_dir.name, gate=gate, meta=meta)
    paths = {n: session_dir / n for n in ("summary.json", "results.csv",
                                          "agent_decisions.jsonl", "report.md")}
    write_text(paths["results.csv"], records_frame(recs).to_csv(index=False))
    lines = [json.dumps({"test_id": r["test_id"], "seed": r.get("seed"), "run": r.get("run"),
                         "case": r.get("case"), **d}, default=str)
             for r in recs for d in r.get("agent_decisions") or []]
    write_text(paths["agent_decisions.jsonl"], "".join(ln + "\n" for ln in lines))
    write_text(paths["report.md"], render_markdown(summary, recs))
    write_json(paths["summary.json"], summary)
    if latest:
        _link_latest(session_dir)
    return SessionReport(session_dir, summary, summary["gate"]["failures"], paths)
