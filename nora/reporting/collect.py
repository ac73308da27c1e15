"""Find what a report reads under any mix of paths, and turn it into records.

Two kinds of input: pytest session reports (a folder with ``summary.json`` and
``results.csv``, whose gate result and test verdicts live only there) and plain run
directories (``manifest.json``). A run directory nested in another one (a replay under
``<run>/replays/``) is not a run of its own: it is counted on its parent.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nora.errors import ConfigError
from nora.reader import read_object, read_steps
from nora.session_report import case_record, gate_failures

METRIC_NAMES = ("accuracy", "mean_return", "greedy_return")


@dataclass
class Source:
    """One session report, or the plain run directories given on the command line."""

    label: str
    kind: str                                   # "session" or "runs"
    path: Path | None
    gate_enabled: bool
    failures: list[dict[str, Any]]
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gate_passed(self) -> bool:
        return not self.failures


def _check_paths(paths: Iterable[str | Path]) -> list[Path]:
    out = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ConfigError(f"report path {str(raw)!r} does not exist; give run directories "
                              "(runs/<timestamp>) or pytest session reports (reports/<session>)")
        out.append(path.resolve())
    return out


def _below(path: Path, name: str) -> list[Path]:
    if (path / name).is_file():
        return [path]
    return sorted({p.parent.resolve() for p in path.rglob(name)})


def _nested_in(path: Path, runs: set[Path]) -> Path | None:
    """The outermost run directory above ``path``, if any."""
    above = [p for p in path.parents if p in runs]
    return above[-1] if above else None


def discover(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path], dict[Path, int]]:
    """Session dirs, top-level run dirs, and the number of replays under each run dir."""
    roots = _check_paths(paths)
    sessions = list(dict.fromkeys(s for r in roots for s in _below(r, "summary.json")
                                  if (s / "results.csv").is_file()))
    every = list(dict.fromkeys(d for r in roots for d in _below(r, "manifest.json")))
    replays: dict[Path, int] = {}
    runs, known = [], set(every)
    for run in every:
        parent = _nested_in(run, known)
        if parent is not None:
            replays[parent] = replays.get(parent, 0) + 1
        else:
            runs.append(run)
    if not sessions and not runs:
        raise ConfigError("no run directories (with a manifest.json) or session reports "
                          f"(with a summary.json) under {', '.join(map(str, roots))}")
    return sessions, runs, replays


def _parse_verdicts(text: str) -> dict[str, bool]:
    out = {}
    for item in filter(None, (text or "").split(";")):
        name, _, value = item.partition("=")
        out[name] = value == "pass"
    return out


def _details(failures: list[Mapping[str, Any]], test_id: str, seed: Any) -> dict[str, str]:
    """Verdict details survive only in the gate's failure reasons: recover them."""
    out = {}
    for f in failures:
        reason = str(f.get("reason", ""))
        if f.get("test_id") == test_id and str(f.get("seed")) == str(seed) and \
                reason.startswith("verdict "):
            name, _, detail = reason[len("verdict "):].partition(" failed")
            out[name] = detail.removeprefix(": ")
    return out


def _int(text: str) -> int | None:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None


def _extras(record: dict[str, Any], run: Path | None, label: str, source: str,
            replays: Mapping[Path, int]) -> dict[str, Any]:
    manifest = _read(run / "manifest.json") if run else {}
    repro = _read(run / "norms" / "reproducibility_metrics.json") if run else {}
    metrics = manifest.get("metrics") or {}
    name = next((n for n in METRIC_NAMES if isinstance(metrics.get(n), (int, float))), None)
    verification = _read(run / "verification.json") if run else {}
    return {**record, "label": label, "source": source, "path": str(run) if run else None,
            "metric_name": name, "metric": metrics.get(name) if name else None,
            "findings": list(repro.get("findings") or []),
            "verification": verification or None, "replays": replays.get(run, 0) if run else 0,
            "curve": _curve(run) if run else [], "agent_decisions": record["agent_decisions"]}


def _read(path: Path) -> dict[str, Any]:
    """A JSON object a report reads, or {} when absent; a damaged one is a RecordError
    naming the file, never silently skipped."""
    return read_object(path) if path.exists() else {}


def _curve(run: Path) -> list[tuple[int, float]]:
    steps = read_steps(run / "metrics.jsonl") or {}
    return [(s, float(r["loss"])) for s, r in sorted(steps.items())
            if r.get("loss") is not None]


def read_session(session: Path, replays: Mapping[Path, int]) -> Source:
    """A pytest session report: its records (verdicts included) and its gate's result."""
    summary = _read(session / "summary.json")
    gate = summary.get("gate") or {}
    failures = list(gate.get("failures") or [])
    src = Source(session.name, "session", session, bool(gate.get("enabled")), failures)
    with (session / "results.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        run = (session / row["run_dir"]).resolve() if row.get("run_dir") else None
        seed = _int(row.get("seed", ""))
        verdicts = {k: {"passed": v, "detail": "" if v else
                        _details(failures, row["test_id"], row.get("seed", "")).get(k, "")}
                    for k, v in _parse_verdicts(row.get("verdicts", "")).items()}
        spec = {k: row.get(k) or None for k in ("mode", "regime", "violation", "trainer")}
        rec = case_record(run if run and run.is_dir() else None, test_id=row["test_id"],
                          case=row.get("case", ""), run=_int(row.get("run", "")) or 0,
                          seed=seed, worker=row.get("worker") or "main", verdicts=verdicts,
                          error=row.get("error") or None, spec=spec)
        rec["test_outcome"] = row.get("test_outcome") or None
        label = row["test_id"] + (f" s{seed}" if seed is not None else "")
        src.records.append(_extras(rec, run, label, src.label, replays))
    return src


def read_runs(runs: list[Path], replays: Mapping[Path, int]) -> Source:
    """Plain run directories; the gate was never run on them, but what would fail it is shown."""
    root = Path(*_common_parts(runs)) if len(runs) > 1 else runs[0].parent
    src = Source("run directories", "runs", None, False, [])
    for run in runs:
        label = str(run.relative_to(root)) if run.is_relative_to(root) else str(run)
        rec = case_record(run, test_id=label, case=run.name)
        src.records.append(_extras(rec, run, label, src.label, replays))
    src.failures = gate_failures(src.records)
    return src


def _common_parts(paths: list[Path]) -> tuple[str, ...]:
    common = []
    for group in zip(*(p.parts for p in paths)):
        if len(set(group)) != 1:
            break
        common.append(group[0])
    return tuple(common) or ("/",)


def collect(paths: Iterable[str | Path]) -> list[Source]:
    """Every session and run under ``paths``; runs inside a session are read through it."""
    sessions, runs, replays = discover(paths)
    sources = [read_session(s, replays) for s in sessions]
    covered = {Path(r["path"]) for s in sources for r in s.records if r["path"]}
    loose = [r for r in runs if r not in covered]
    if loose:
        sources.append(read_runs(loose, replays))
    return sources
