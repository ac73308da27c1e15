"""Figures for the report page, rendered with matplotlib to embedded PNG data URIs.

Each figure returns ``(data_uri, caption)``; the caption says what is shown and, when
there is more than fits, how much was left out ("showing 12 of 21 runs").
"""
from __future__ import annotations

import base64
import io
import math
import textwrap
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

ACTIONS = {"halt": ("X", "#c62828"), "auto_fix": ("o", "#1565c0"), "tolerate": ("^", "#6a1b9a"),
           "log": ("s", "#ef6c00"), "adjust": ("D", "#2e7d32"), "warn": ("v", "#f9a825")}
Figure = tuple[str, str]


def to_data_uri(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _shown(n: int, total: int, what: str) -> str:
    return f"showing {n} of {total} {what}" if n < total else f"{total} {what}"


def _experiments(records: Sequence[Mapping[str, Any]]) -> list[tuple[tuple, list]]:
    groups: dict[tuple, list] = defaultdict(list)
    for r in records:
        if r.get("status") == "done" and r.get("curve"):
            key = tuple(str(r.get(k) or "—") for k in ("trainer", "mode", "regime", "violation"))
            groups[key].append(r)
    return sorted(groups.items(), key=lambda kg: (-len(kg[1]), kg[0]))


def _band(curves: list[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    steps = sorted({s for c in curves for s, _ in c})
    index = {s: i for i, s in enumerate(steps)}
    grid = np.full((len(curves), len(steps)), np.nan)
    for row, curve in enumerate(curves):
        for s, loss in curve:
            grid[row, index[s]] = loss
    grid[~np.isfinite(grid)] = np.nan
    count = np.sum(~np.isnan(grid), axis=0)
    with warnings.catch_warnings():     # a step only one seed reached has no spread
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(grid, axis=0)
        std = np.nanstd(grid, axis=0, ddof=1)
    half = 1.96 * np.nan_to_num(std) / np.sqrt(np.maximum(count, 1))
    return np.array(steps), mean, half


def _mark_nonfinite(ax: plt.Axes, curves: list[list[tuple[int, float]]]) -> None:
    """Say where the loss stopped being finite (amp_nan left alone), instead of an empty
    or silently truncated panel."""
    bad = [s for c in curves for s, loss in c if not math.isfinite(loss)]
    if not bad:
        return
    first = min(bad)
    ax.axvline(first, color="#c62828", lw=1, ls="--")
    finite = any(math.isfinite(loss) for c in curves for _, loss in c)
    text = f"loss not finite from step {first}" if finite else "loss not finite at any step"
    ax.text(0.5, 0.5 if not finite else 0.92, text, transform=ax.transAxes, ha="center",
            va="center", fontsize=8, color="#c62828")
    steps = [s for c in curves for s, _ in c]          # the whole run, not its finite part
    ax.set_xlim(min(steps) - 0.5, max(steps) + 0.5)
    if not finite:
        ax.set_yticks([])


def learning_curves(records: Sequence[Mapping[str, Any]], max_panels: int = 9) -> Figure | None:
    """Loss per step, one panel per experiment: each seed, their mean and a 95% band."""
    made = curves_figure(records, max_panels)
    return (to_data_uri(made[0]), made[1]) if made else None


def curves_figure(records: Sequence[Mapping[str, Any]],
                  max_panels: int = 9) -> tuple[plt.Figure, str] | None:
    """The learning-curve figure itself (for tests and for callers that save it)."""
    groups = _experiments(records)
    if not groups:
        return None
    shown = groups[:max_panels]
    cols = min(3, len(shown))
    rows = int(np.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False,
                             layout="constrained")
    multi_trainer = len({k[0] for k, _ in groups}) > 1
    for ax, ((trainer, mode, regime, violation), group) in zip(axes.flat, shown):
        curves = [r["curve"] for r in group]
        for curve in curves:      # a curve of one or two points is drawn as dots too
            ax.plot(*zip(*curve), lw=0.8, alpha=0.45, color="#5c6bc0",
                    marker="o" if sum(math.isfinite(v) for _, v in curve) < 3 else None, ms=3)
        if len(curves) > 1:
            steps, mean, half = _band(curves)
            ax.fill_between(steps, mean - half, mean + half, color="grey", alpha=0.3, lw=0)
            ax.plot(steps, mean, color="black", lw=1.4)
        _mark_nonfinite(ax, curves)
        prefix = f"{trainer} · " if multi_trainer else ""
        ax.set_title(f"{prefix}{violation}\n{mode} · {regime} · {len(curves)} seed(s)",
                     fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    handles = [Line2D([], [], color="#5c6bc0", lw=0.8, alpha=0.6, label="one run per seed"),
               Line2D([], [], color="black", lw=1.4, label="mean over seeds"),
               Patch(color="grey", alpha=0.3, label="95% confidence band")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    caption = (f"Loss per step; {_shown(len(shown), len(groups), 'experiments')} "
               "(the ones with the most seeds first).")
    return fig, caption


def decision_timeline(records: Sequence[Mapping[str, Any]], max_runs: int = 30) -> Figure | None:
    """When each run's agent decided what, by step; every label in full."""
    made = timeline_figure(records, max_runs)
    return (to_data_uri(made[0]), made[1]) if made else None


def timeline_figure(records: Sequence[Mapping[str, Any]],
                    max_runs: int = 30) -> tuple[plt.Figure, str] | None:
    """The decision-timeline figure itself."""
    runs = [r for r in records if r.get("agent_decisions")]
    if not runs:
        return None
    shown = runs[:max_runs]
    labels = ["\n".join(textwrap.wrap(r["label"], 60, break_on_hyphens=False)) for r in shown]
    height = sum(0.28 * (lbl.count("\n") + 1) + 0.14 for lbl in labels) + 1.4
    fig, ax = plt.subplots(figsize=(10, height), layout="constrained")
    seen: set[str] = set()
    for y, r in enumerate(shown):
        for d in r["agent_decisions"]:
            action = str(d.get("agent_action"))
            marker, colour = ACTIONS.get(action, (".", "#616161"))
            ax.scatter(d.get("step") or 0, y, marker=marker, color=colour, s=55, zorder=3,
                       label=None if action in seen else action)
            seen.add(action)
    ax.set_yticks(range(len(shown)), labels, fontsize=7)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.grid(axis="y", color="#eeeeee", zorder=0)
    steps = [d.get("step") or 0 for r in shown for d in r["agent_decisions"]]
    ax.set_xlim(min(steps) - 0.5, max(steps) + 0.5)   # whole steps, also for one step
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("step")
    ax.legend(title="agent action", fontsize=7, title_fontsize=7, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False)
    caption = (f"Agent decisions by training step; "
               f"{_shown(len(shown), len(runs), 'runs with decisions')}"
               + ("; the tables below list every run." if len(shown) < len(runs) else "."))
    return fig, caption
