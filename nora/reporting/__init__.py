"""`python -m nora report PATH...`: aggregate runs and pytest session reports into
report.md and a self-contained report.html."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from nora.records import write_json
from nora.reporting.collect import Source, collect

__all__ = ["build_report", "collect", "main"]

_HEAVY = ("curve", "agent_decisions")


def _records(sources: list[Source]) -> list[dict[str, Any]]:
    """Every record; labels name their session when several sources are shown together."""
    many = len(sources) > 1
    return [{**r, "label": f"{s.label}: {r['label']}" if many and s.kind == "session"
             else r["label"]} for s in sources for r in s.records]


def _place(tmp: Path, out: Path | None, base: Path, stamp: str) -> Path:
    """Move the finished report into place: ``out`` as given, else a new folder whose name
    no other report has (two reports in the same second get -2, -3 ...)."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            os.replace(f, out / f.name)
        tmp.rmdir()
        return out
    for n in range(1, 1000):
        target = base / (f"report-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            target.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        for f in tmp.iterdir():
            os.replace(f, target / f.name)
        tmp.rmdir()
        return target
    raise FileExistsError(f"no free report folder name under {base}")


def build_report(paths: Sequence[str | Path], out: str | Path | None = None,
                 base: str | Path = "reports") -> tuple[Path, Path]:
    """Write report.md, report.html and runs.json for everything under ``paths``."""
    from nora.reporting.page import render     # matplotlib: only when a report is made

    sources = collect(paths)
    records = _records(sources)
    now = datetime.now()
    markdown, page = render(sources, records, now.isoformat(timespec="seconds"))
    parent = Path(out).parent if out else Path(base)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".report-", dir=parent))
    try:
        (tmp / "report.md").write_text(markdown)
        (tmp / "report.html").write_text(page)
        write_json(tmp / "runs.json", [{k: v for k, v in r.items() if k not in _HEAVY}
                                       for r in records])
        target = _place(tmp, Path(out) if out else None, Path(base),
                        now.strftime("%Y-%m-%d_%H-%M-%S"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / "report.md", target / "report.html"


def main(paths: Sequence[str], out: str | None = None) -> int:
    md, page = build_report(paths, out)
    print(f"[nora] report: {md}\n[nora] page:   {page}")
    return 0
