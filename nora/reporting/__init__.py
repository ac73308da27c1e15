"""`python -m nora report PATH...`: aggregate runs and pytest session reports into
report.md and a self-contained report.html."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from nora.reporting.collect import find_runs, runs_table
from nora.reporting.page import write_report


def build_report(paths: Sequence[str | Path], out: str | Path | None = None) -> tuple[Path, Path]:
    """Write report.md and report.html for every run under ``paths``; return their paths."""
    runs = find_runs(paths)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    target = Path(out) if out else Path("reports") / f"report-{stamp}"
    return write_report(runs_table(runs), target)


def main(paths: Sequence[str], out: str | None = None) -> int:
    md, page = build_report(paths, out)
    print(f"[nora] report: {md}\n[nora] page:   {page}")
    return 0
