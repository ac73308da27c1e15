"""The report's tables as plain rows (lists of dicts), shared by report.md and report.html.

Every value a person reads goes through :func:`fmt`: a missing value is "—", never
``nan``, ``None`` or ``<NA>``.
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

MISSING = "—"
MODES = ["pipeline", "agentic", "norm_aware"]
REGIMES = ["strict", "balanced", "exploratory"]
Row = dict[str, Any]


def fmt(value: Any, digits: int = 4) -> str:
    """A cell's text: "—" for anything missing, floats to ``digits`` significant digits."""
    if value is None or value is MISSING:
        return MISSING
    try:
        if value != value:           # nan, pd.NA raises TypeError
            return MISSING
    except TypeError:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    text = str(value)
    return text if text else MISSING


def _order(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    known = [v for v in preferred if v in values]
    return known + sorted(v for v in values if v not in preferred)


def outcome_grid(records: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[str, str]],
                                                                  list[tuple[str, list]]]:
    """Violation rows x (mode, regime) columns; a cell is None or
    ``{"text", "ok", "runs", "expected"}`` (several outcomes when seeds disagree)."""
    trainers = {r.get("trainer") for r in records if r.get("outcome")}
    cells: dict[tuple[str, tuple[str, str]], list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if not (r.get("outcome") and r.get("mode") and r.get("regime")):
            continue
        row = str(r.get("violation") or MISSING)
        if len(trainers) > 1:
            row = f"{r.get('trainer') or MISSING}: {row}"
        cells[(row, (str(r["mode"]), str(r["regime"])))].append(r)
    modes = _order({c[0] for _, c in cells}, MODES)
    regimes = _order({c[1] for _, c in cells}, REGIMES)
    columns = [(m, g) for m in modes for g in regimes if any(c == (m, g) for _, c in cells)]
    rows = []
    for name in sorted({k for k, _ in cells}):
        line = []
        for col in columns:
            group = cells.get((name, col))
            if not group:
                line.append(None)
                continue
            outcomes = sorted({str(r["outcome"]) for r in group})
            expected = sorted({str(r.get("expected_outcome")) for r in group})
            line.append({"text": "/".join(outcomes), "runs": len(group),
                         "ok": all(r.get("as_expected") is not False for r in group),
                         "expected": "/".join(expected)})
        rows.append((name, line))
    return columns, rows


def verdict_table(records: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[Row]]:
    """One row per run (or verdict-only case): its outcome check and every verdict it has;
    rows with a failure first."""
    names = sorted({n for r in records for n in (r.get("verdicts") or {})})
    rows = []
    for r in records:
        verdicts = r.get("verdicts") or {}
        if r.get("expected_outcome") is None and not verdicts:
            continue
        row: Row = {"run": r["label"], "outcome as expected": (
            None if r.get("as_expected") is None else
            "pass" if r["as_expected"] else
            f"FAIL: {r.get('outcome')} (expected {r.get('expected_outcome')})")}
        for n in names:
            v = verdicts.get(n)
            row[n] = None if v is None else "pass" if v["passed"] else (
                "FAIL" + (f": {v['detail']}" if v.get("detail") else ""))
        rows.append(row)
    rows.sort(key=lambda row: not any(str(v).startswith("FAIL") for v in row.values()))
    return ["run", "outcome as expected", *names], rows


def verdict_counts(records: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(passed, failed) over every verdict and every outcome check."""
    passed = failed = 0
    for r in records:
        checks = [v["passed"] for v in (r.get("verdicts") or {}).values()]
        if r.get("as_expected") is not None:
            checks.append(bool(r["as_expected"]))
        passed += sum(checks)
        failed += len(checks) - sum(checks)
    return passed, failed


def detection_rows(records: Sequence[Mapping[str, Any]]) -> list[Row]:
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("violation") not in (None, "none") and r.get("outcome"):
            groups[(str(r["violation"]), str(r.get("mode")))].append(r)

    def mean(key: str, rs: list[Mapping[str, Any]]) -> float | None:
        vals = [float(r[key]) for r in rs if isinstance(r.get(key), (int, float))]
        return sum(vals) / len(vals) if vals else None
    return [{"violation": v, "mode": m, "runs": len(rs),
             "detection rate %": mean("detection_rate_pct", rs),
             "mean time to detection (s)": mean("time_to_detection_sec", rs)}
            for (v, m), rs in sorted(groups.items())]


def _compact(evidence: Any, limit: int = 160) -> str:
    text = json.dumps(evidence, sort_keys=True, default=str) if evidence else ""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def findings_rows(records: Sequence[Mapping[str, Any]]) -> list[Row]:
    return [{"run": r["label"], "violation": f.get("violation"), "severity": f.get("severity"),
             "source": f.get("source"), "event": f.get("event"), "step": f.get("step"),
             "false positive": f.get("false_positive"), "evidence": _compact(f.get("evidence"))}
            for r in records for f in r.get("findings") or []]


def verification_rows(records: Sequence[Mapping[str, Any]]) -> list[Row]:
    rows = []
    for r in records:
        v = r.get("verification")
        if not v:
            continue
        audited, total = v.get("audited_steps"), v.get("total_steps")
        rows.append({"run": r["label"], "verdict": v.get("verdict"),
                     "audited steps": f"{fmt(audited)} of {fmt(total)}",
                     "cost ratio": v.get("cost_ratio"),
                     "first divergent step": v.get("first_divergent_step")})
    return rows


def run_rows(records: Sequence[Mapping[str, Any]]) -> list[Row]:
    rows = [{"run": r["label"], "trainer": r.get("trainer"), "mode": r.get("mode"),
             "regime": r.get("regime"), "violation": r.get("violation"), "seed": r.get("seed"),
             "status": r.get("status"), "outcome": r.get("outcome"),
             "expected": r.get("expected_outcome"),
             "metric": (f"{r['metric_name']}={fmt(r['metric'])}" if r.get("metric_name")
                        else None),
             "decisions": r.get("decisions"), "findings": len(r.get("findings") or []),
             "replays": r.get("replays") or 0,
             "fingerprint": (r.get("fingerprint") or "")[:12] or None,
             "duration (s)": r.get("duration_sec")}
            for r in records if r.get("path") or r.get("outcome")]
    if len({r["trainer"] for r in rows}) == 1:      # one trainer: say it once, not per row
        for r in rows:
            r.pop("trainer")
    return rows
