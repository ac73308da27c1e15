"""report.md and a self-contained report.html (styles inline, images embedded).

Everything on the page that comes from records (names, modes, regimes, messages, evidence,
verdict names) is text, never markup: it goes through ``esc`` or a ``to_html(escape=True)``,
so a shared report cannot run a script someone wrote into a manifest."""
from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

import pandas as pd

from nora.records import write_json, write_text
from nora.reporting.collect import decisions
from nora.reporting.figures import decision_timeline, learning_curves

COLOURS = {"clean": "#2e7d32", "fixed": "#1565c0", "tolerated": "#6a1b9a",
           "logged": "#ef6c00", "halted": "#c62828", "undetected": "#616161"}
MODES = ["pipeline", "agentic", "norm_aware"]
REGIMES = ["strict", "balanced", "exploratory"]


def esc(value: object) -> str:
    """A record's value as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def outcome_grid(table: pd.DataFrame) -> pd.DataFrame:
    """violation x (mode, regime) -> outcome ("a/b" when seeds disagree)."""
    def cell(s: pd.Series) -> str:
        values = sorted(set(s.dropna()))
        return "/".join(values) if values else ""

    grid = table.pivot_table(index="violation", columns=["mode", "regime"], values="outcome",
                             aggfunc=cell)
    cols = [(m, r) for m in MODES for r in REGIMES if (m, r) in grid.columns]
    return grid.reindex(columns=pd.MultiIndex.from_tuples(cols)) if cols else grid


def detection_summary(table: pd.DataFrame) -> pd.DataFrame:
    injected = table[table["violation"] != "none"]
    if injected.empty:
        return pd.DataFrame()
    return (injected.groupby(["violation", "mode"])
            .agg(runs=("run", "count"), detection_rate_pct=("detection_rate_pct", "mean"),
                 mean_time_to_detection_sec=("time_to_detection_sec", "mean"))
            .reset_index())


def verdict_table(table: pd.DataFrame) -> pd.DataFrame:
    rows = [{"run": r.run, **{k: "pass" if v else "FAIL" for k, v in r.verdicts.items()},
             "outcome_as_expected": "pass" if r.outcome == r.expected else "FAIL"}
            for r in table.itertuples() if r.expected is not None]
    return pd.DataFrame(rows)


def _grid_html(grid: pd.DataFrame) -> str:
    if grid.empty:
        return "<p>No runs.</p>"
    head1 = "".join(f'<th colspan="{sum(1 for c in grid.columns if c[0] == m)}">{esc(m)}</th>'
                    for m in dict.fromkeys(c[0] for c in grid.columns))
    head2 = "".join(f"<th>{esc(r)}</th>" for _, r in grid.columns)
    body = []
    for violation, row in grid.iterrows():
        cells = []
        for value in row:
            text = "" if pd.isna(value) else str(value)
            colour = COLOURS.get(text, "#9e9e9e" if text else "#ffffff")
            cells.append(f'<td style="background:{colour};color:white">{esc(text)}</td>')
        body.append(f"<tr><th>{esc(violation)}</th>{''.join(cells)}</tr>")
    return (f'<table class="grid"><tr><th rowspan="2">violation</th>{head1}</tr>'
            f"<tr>{head2}</tr>{''.join(body)}</table>")


def _timeline_tables(table: pd.DataFrame, limit: int = 20) -> str:
    parts = []
    for r in table.itertuples():
        decs = decisions(Path(r.path))
        if not decs:
            continue
        frame = pd.DataFrame(decs).reindex(columns=["step", "epoch", "event", "agent_action",
                                                    "violation_name", "message"])
        parts.append(f"<details><summary>{esc(r.run)} ({len(decs)} decisions)"
                     f"</summary>{frame.to_html(index=False, escape=True)}</details>")
        if len(parts) >= limit:
            break
    return "".join(parts) or "<p>No agent decisions.</p>"


CSS = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
       "font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
       ".grid td{text-align:center}img{max-width:100%}h2{margin-top:1.5em}")


def write_report(table: pd.DataFrame, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    grid, detection, verdicts = outcome_grid(table), detection_summary(table), verdict_table(table)
    shown = table.drop(columns=["path", "verdicts"]).assign(
        fingerprint=table["fingerprint"].fillna("").str[:12])
    stamp = datetime.now().isoformat(timespec="seconds")
    md = [f"# NORA report\n\n{len(table)} runs, generated {stamp}.\n",
          "## Outcome grid\n", grid.to_markdown() if not grid.empty else "No runs.",
          "\n## Detection\n", detection.to_markdown(index=False) if not detection.empty else
          "No injected violations.", "\n## Verdicts\n",
          verdicts.to_markdown(index=False) if not verdicts.empty else "No verdicts.",
          "\n## Runs\n", shown.to_markdown(index=False), "\n"]
    md_path = out / "report.md"
    write_text(md_path, "\n".join(md))
    curves, timeline = learning_curves(table), decision_timeline(table)
    img = lambda uri, alt: f'<img alt="{alt}" src="{uri}">' if uri else "<p>Nothing to plot.</p>"  # noqa: E731
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>NORA report</title>
<style>{CSS}</style></head><body><h1>NORA report</h1><p>{len(table)} runs, generated {stamp}.</p>
<h2>Outcome grid</h2>{_grid_html(grid)}
<h2>Learning curves</h2>{img(curves, "learning curves")}
<h2>Decision timeline</h2>{img(timeline, "decision timeline")}{_timeline_tables(table)}
<h2>Verdicts</h2>{verdicts.to_html(index=False, escape=True) if not verdicts.empty else "<p>No verdicts.</p>"}
<h2>Detection rate and time to detection</h2>{detection.to_html(index=False, escape=True) if not detection.empty else "<p>No injected violations.</p>"}
<h2>Runs</h2>{shown.to_html(index=False, escape=True)}</body></html>"""
    html_path = out / "report.html"
    write_text(html_path, page)
    write_json(out / "runs.json", table.drop(columns=["path"]).to_dict(orient="records"))
    return md_path, html_path
