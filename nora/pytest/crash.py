"""A case whose xdist worker died (``kill -9``, OOM, ``os._exit``): the controller gives it
rows of its own instead of letting it vanish. Runs the case finished before the crash are
recovered from their run directories; the run that was in progress becomes a ``crashed``
row and its manifest is marked ``crashed`` (never left ``running``)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

CASE_ATTR = "nora_case"   # the setup-report attribute that tells the controller a case began


def case_info(spec: Any, worker: str, seeds: list[Any]) -> dict[str, Any]:
    """What the controller needs to give a crashed case its row (plain data, for xdist)."""
    return {"test_id": spec.test_id, "case": spec.case, "worker": worker, "seeds": seeds,
            **spec.as_dict()}


def _expected(mode: Any, regime: Any, violation: Any) -> str | None:
    try:
        import nora

        return str(nora.expected_outcome(mode, regime, violation))
    except Exception:  # noqa: BLE001 - an unknown name leaves the cell empty, not the row
        return None


def _run_dirs(case_dir: Path) -> list[Path]:
    from nora.records import read_json

    def started(rd: Path) -> str:
        try:
            return str(read_json(rd / "manifest.json").get("started_at") or "")
        except (OSError, ValueError, AttributeError):
            return ""
    dirs = [p for p in case_dir.iterdir() if p.is_dir()] if case_dir.is_dir() else []
    return sorted(dirs, key=lambda p: (started(p) or "~", p.name))


def crashed_records(nodeid: str, worker: str, session_dir: Path, reason: str,
                    info: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Rows for a case that was running on a worker that crashed.

    ``info`` is the case's ``CASE_ATTR`` from its setup report (None when the worker died
    before the case's setup finished); without it and without a run directory the test is
    not known to be a NORA case and gets no row.
    """
    from nora.pytest.case import case_name
    from nora.runstatus import UNFINISHED, mark_stopped
    from nora.session_report import case_record

    info = dict(info or {})
    case = str(info.get("case") or case_name(nodeid))
    runs_root = session_dir / "runs"
    spec = {k: info.get(k) for k in ("trainer", "mode", "regime", "violation")}
    seeds = list(info.get("seeds") or [])
    out: list[dict[str, Any]] = []
    for i, rd in enumerate(_run_dirs(runs_root / case)):
        marked = mark_stopped(rd, "crashed", reason)
        rec = case_record(rd, test_id=nodeid, case=case, run=i, worker=worker,
                          spec=spec, relative_to=session_dir,
                          seed=seeds[i] if i < len(seeds) else None,
                          error=reason if marked is not None else None)
        if marked is not None or rec.get("status") in UNFINISHED:
            out.append(_crashed(rec, reason))
        else:
            out.append(rec)
    if not out and info:
        rec = case_record(None, test_id=nodeid, case=case, run=0, worker=worker, spec=spec,
                          seed=seeds[0] if seeds else None, error=reason)
        out.append(_crashed(rec, reason))
    for rec in out:
        rec["test_outcome"] = "failed"
    return out


def _crashed(rec: dict[str, Any], reason: str) -> dict[str, Any]:
    expected = rec.get("expected_outcome") or _expected(rec.get("mode"), rec.get("regime"),
                                                        rec.get("violation"))
    rec.update(outcome="crashed", expected_outcome=expected, as_expected=False,
               status="crashed", error=reason)
    return rec


def crash_text(records: list[dict[str, Any]], session_dir: Path) -> str:
    """The report section of a crashed case: what was running, and where its records are."""
    lines = []
    for r in records:
        where = session_dir / r["run_dir"] if r.get("run_dir") else "(no run directory yet)"
        state = ("crashed; manifest marked 'crashed'" if r.get("outcome") == "crashed"
                 and r.get("run_dir") else r.get("outcome") or r.get("status"))
        lines.append(f"run {r.get('run')} seed {r.get('seed')}: {state} in {where}")
    return "\n".join(lines)
