"""Figures for the report page, rendered with matplotlib to embedded PNG data URIs."""
from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nora.reporting.collect import decisions, step_curves  # noqa: E402

ACTION_MARKERS = {"halt": "X", "auto_fix": "o", "tolerate": "^", "log": "s", "adjust": "d",
                  "warn": "v"}


def to_data_uri(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def learning_curves(table: pd.DataFrame, max_groups: int = 9) -> str | None:
    """Loss per step for each seed of an experiment, with the mean and a 95% band."""
    keys = ["trainer", "mode", "regime", "violation"]
    groups = [(k, g) for k, g in table[table["status"] == "done"].groupby(keys, dropna=False)]
    if not groups:
        return None
    groups = sorted(groups, key=lambda kg: -len(kg[1]))[:max_groups]
    cols = min(3, len(groups))
    rows = int(np.ceil(len(groups) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3 * rows), squeeze=False)
    for ax, (key, group) in zip(axes.flat, groups):
        curves = [step_curves(Path(p)).set_index("step")["loss"] for p in group["path"]]
        for seed, curve in zip(group["seed"], curves):
            ax.plot(curve.index, curve.values, lw=0.7, alpha=0.5, label=f"seed {seed}")
        frame = pd.concat(curves, axis=1, ignore_index=True)
        if frame.shape[1] > 1:
            mean = frame.mean(axis=1)
            half = 1.96 * frame.std(axis=1, ddof=1) / np.sqrt(frame.count(axis=1))
            ax.plot(mean.index, mean, color="black", lw=1.4, label="mean")
            ax.fill_between(mean.index, mean - half, mean + half, color="grey", alpha=0.3,
                            label="95% CI")
        ax.set_title("/".join(str(k) for k in key), fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax.tick_params(labelsize=7)
        if len(group) <= 6:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.suptitle("Learning curves (per seed, mean and 95% confidence band)", fontsize=10)
    return to_data_uri(fig)


def decision_timeline(table: pd.DataFrame, max_runs: int = 12) -> str | None:
    """When each run's agent decided what, by step."""
    runs = [(r.run, decisions(Path(r.path))) for r in table.itertuples()]
    runs = [(name, d) for name, d in runs if d][:max_runs]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(runs) + 1.2))
    for y, (_, decs) in enumerate(runs):
        for d in decs:
            ax.scatter(d.get("step", 0), y, marker=ACTION_MARKERS.get(d["agent_action"], "."),
                       s=50, label=d["agent_action"])
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper right")
    ax.set_yticks(range(len(runs)), [name[-40:] for name, _ in runs], fontsize=7)
    ax.set_xlabel("step")
    ax.set_title("Agent decisions over training steps", fontsize=10)
    return to_data_uri(fig)
