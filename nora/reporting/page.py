"""report.md and a self-contained report.html (styles inline, images embedded).

Everything read from records is escaped with ``html.escape`` before it reaches the page:
test ids, labels, messages and evidence are user data.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

from nora.reporting.collect import Source
from nora.reporting.figures import decision_timeline, learning_curves
from nora.reporting.tables import (MISSING, detection_rows, findings_rows, fmt, outcome_grid,
                                   run_rows, verdict_counts, verdict_table, verification_rows)

COLOURS = {"clean": "#2e7d32", "fixed": "#1565c0", "tolerated": "#6a1b9a",
           "logged": "#ef6c00", "halted": "#c62828", "undetected": "#616161"}
CSS = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1250px;padding:0 1em;"
       "color:#212121}table{border-collapse:collapse;font-size:12px;margin:0.5em 0}"
       "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}th{background:#f5f5f5}"
       ".grid td{text-align:center;color:white;font-weight:600}.grid td.none{color:#9e9e9e;"
       "background:white;font-weight:normal}.grid td.bad{outline:3px solid #000;"
       "outline-offset:-3px}td.pass{background:#e8f5e9;color:#1b5e20}td.fail{background:#ffebee;"
       "color:#b71c1c;font-weight:600}img{max-width:100%}h2{margin-top:1.6em;border-bottom:1px "
       "solid #ddd}.banner{padding:0.7em 1em;border-radius:4px;margin:0.4em 0;color:white}"
       ".banner.ok{background:#2e7d32}.banner.bad{background:#c62828}.banner.off{background:"
       "#ef6c00}.caption{color:#555;font-size:13px}details{margin:0.2em 0}"
       ".scroll{overflow-x:auto}")
Rows = Sequence[Mapping[str, Any]]


def _cell_class(value: str) -> str:
    if value == "pass":
        return ' class="pass"'
    return ' class="fail"' if value.startswith("FAIL") else ""


def html_table(columns: Sequence[str], rows: Rows, empty: str) -> str:
    if not rows:
        return f"<p>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = [fmt(row.get(c)) for c in columns]
        body.append("<tr>" + "".join(f"<td{_cell_class(v)}>{escape(v)}</td>" for v in cells)
                    + "</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def md_table(columns: Sequence[str], rows: Rows, empty: str) -> str:
    if not rows:
        return empty
    def cell(v: Any) -> str:
        return fmt(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def gate_lines(source: Source) -> tuple[str, str, list[str]]:
    """(css class, headline, reasons) for a source's gate result."""
    n = len(source.failures)
    reasons = [f"{f['test_id']} (seed {fmt(f.get('seed'))}): {f['reason']}"
               for f in source.failures]
    if source.kind == "runs":
        head = (f"{source.label}: the gate does not run on plain run directories; it would "
                + (f"fail on {n} problem(s)" if n else "pass"))
        return ("bad" if n else "ok"), head, reasons
    if source.gate_enabled:
        head = f"session {source.label}: gate " + (f"FAILED on {n} problem(s)" if n else "passed")
        return ("bad" if n else "ok"), head, reasons
    head = (f"session {source.label}: gate off (--nora-gate); it would "
            + (f"fail on {n} problem(s)" if n else "pass"))
    return ("off" if n else "ok"), head, reasons


def _grid(records: Rows) -> tuple[str, str]:
    columns, rows = outcome_grid(records)
    if not rows:
        return "<p>No runs with an outcome.</p>", "No runs with an outcome."
    modes = list(dict.fromkeys(m for m, _ in columns))
    head1 = "".join(f'<th colspan="{sum(1 for c in columns if c[0] == m)}">{escape(m)}</th>'
                    for m in modes)
    head2 = "".join(f"<th>{escape(r)}</th>" for _, r in columns)
    body, md_rows = [], []
    for name, cells in rows:
        tds, md_row = [], {"violation": name}
        for (mode, regime), c in zip(columns, cells):
            if c is None:
                tds.append(f'<td class="none">{MISSING}</td>')
                md_row[f"{mode} / {regime}"] = None
                continue
            text = c["text"] + ("" if c["ok"] else " !")
            title = f"{c['runs']} run(s); expected {c['expected']}"
            colour = COLOURS.get(c["text"], "#9e9e9e")
            bad = "" if c["ok"] else ' class="bad"'
            tds.append(f'<td{bad} style="background:{colour}" title="{escape(title)}">'
                       f"{escape(text)}</td>")
            md_row[f"{mode} / {regime}"] = text
        body.append(f"<tr><th>{escape(name)}</th>{''.join(tds)}</tr>")
        md_rows.append(md_row)
    page = (f'<table class="grid"><tr><th rowspan="2">violation</th>{head1}</tr>'
            f"<tr>{head2}</tr>{''.join(body)}</table><p class=\"caption\">A cell with \"!\" "
            "is not the outcome the design expects (hover for the expected one).</p>")
    md_cols = ["violation", *(f"{m} / {r}" for m, r in columns)]
    return page, md_table(md_cols, md_rows, "") + "\n\n\"!\": not the expected outcome."


def _decision_details(records: Rows) -> str:
    cols = ["step", "epoch", "event", "agent_action", "violation_name", "message"]
    parts = []
    for r in records:
        decs = r.get("agent_decisions") or []
        if decs:
            parts.append(f"<details><summary>{escape(r['label'])} ({len(decs)} decision(s))"
                         f"</summary>{html_table(cols, decs, '')}</details>")
    return "".join(parts) or "<p>No agent decisions.</p>"


def _figure(fig: tuple[str, str] | None, alt: str) -> str:
    if fig is None:
        return "<p>Nothing to plot.</p>"
    uri, caption = fig
    return f'<img alt="{escape(alt)}" src="{uri}"><p class="caption">{escape(caption)}</p>'


def sections(sources: Sequence[Source], records: Rows) -> list[tuple[str, str, str]]:
    """(title, html, markdown) per section, in page order."""
    passed, failed = verdict_counts(records)
    gates = [gate_lines(s) for s in sources]
    banners = "".join(
        f'<div class="banner {cls}"><b>{escape(head)}</b>'
        + ("<ul>" + "".join(f"<li>{escape(x)}</li>" for x in reasons) + "</ul>"
           if reasons else "") + "</div>" for cls, head, reasons in gates)
    md_gate = "\n".join(f"- **{head}**" + "".join(f"\n  - {x}" for x in reasons)
                        for _, head, reasons in gates)
    counts = f"Verdicts and outcome checks: {passed} passed, {failed} failed."
    v_cols, v_rows = verdict_table(records)
    grid_html, grid_md = _grid(records)
    f_rows, ver_rows, d_rows, r_rows = (findings_rows(records), verification_rows(records),
                                        detection_rows(records), run_rows(records))
    f_cols = ["run", "violation", "severity", "source", "event", "step", "false positive",
              "evidence"]
    ver_cols = ["run", "verdict", "audited steps", "cost ratio", "first divergent step"]
    d_cols = ["violation", "mode", "runs", "detection rate %", "mean time to detection (s)"]
    r_cols = list(r_rows[0]) if r_rows else ["run"]
    curves, timeline = learning_curves(records), decision_timeline(records)
    tables: list[tuple[str, Callable[..., str], list, Rows, str]] = [
        ("Verdicts", html_table, v_cols, v_rows, "No verdicts."),
        ("Verification", html_table, ver_cols, ver_rows, "No run has a verification.json "
                                                          "(python -m nora verify RUN_DIR)."),
        ("Findings", html_table, f_cols, f_rows, "No findings recorded."),
    ]
    out = [("Gate", banners + f"<p>{escape(counts)}</p>", md_gate + f"\n\n{counts}"),
           ("Outcome grid", grid_html, grid_md)]
    out += [(title, fn(cols, rows, empty), md_table(cols, rows, empty))
            for title, fn, cols, rows, empty in tables]
    out += [("Learning curves", _figure(curves, "learning curves"),
             curves[1] if curves else "Nothing to plot."),
            ("Decision timeline", _figure(timeline, "decision timeline")
             + _decision_details(records), timeline[1] if timeline else "No agent decisions."),
            ("Detection rate and time to detection",
             html_table(d_cols, d_rows, "No injected violations."),
             md_table(d_cols, d_rows, "No injected violations.")),
            ("Runs", html_table(r_cols, r_rows, "No runs."), md_table(r_cols, r_rows, "No runs."))]
    return out


def render(sources: Sequence[Source], records: Rows, stamp: str) -> tuple[str, str]:
    """(markdown, html) for the whole report."""
    runs = sum(1 for r in records if r.get("path"))
    replays = sum(r.get("replays") or 0 for r in records)
    intro = (f"{runs} run(s) from {len(sources)} source(s)"
             + (f" (and {replays} replay(s), counted on their runs)" if replays else "")
             + f", generated {stamp}.")
    parts = sections(sources, records)
    md = "\n\n".join([f"# NORA report\n\n{intro}"] + [f"## {t}\n\n{m}" for t, _, m in parts])
    body = "\n".join(f"<h2>{escape(t)}</h2>{h}" for t, h, _ in parts)
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>NORA report</title>'
            f"<style>{CSS}</style></head><body><h1>NORA report</h1><p>{escape(intro)}</p>"
            f"{body}</body></html>")
    return md + "\n", page
