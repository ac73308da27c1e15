"""Write a finished NORA run as TensorBoard events (``tracking=tensorboard``): loss, LR and
every numeric step value under ``train/``, evaluation metrics under ``eval/``, NORA's
summary numbers under ``nora/``, and the agent's decisions and the run's outcome as text.

Default folder: ``<run_dir>/tensorboard``, so ``tensorboard --logdir runs`` shows every run;
``tracking.log_dir=DIR`` writes ``DIR/<run name>`` instead.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nora.tracking.records import RunView, TrackingError


def _writer(log_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrackingError("tracking='tensorboard' needs the tensorboard package; install it "
                            "with pip install 'nora[tensorboard]' (or choose tracking=none, "
                            "mlflow)") from None
    return SummaryWriter(log_dir=str(log_dir))


def _decision_text(d: dict[str, Any]) -> str:
    fix = d.get("suggested_fix") or {}
    lines = [f"**{d.get('agent_action')}** `{d.get('violation_name')}` "
             f"({d.get('violation_severity')}) at {d.get('event')} step {d.get('step')}",
             "", str(d.get("message", ""))]
    if fix:
        lines += ["", f"fix: `{json.dumps(fix, default=str)}`"]
    if d.get("evidence"):
        lines += ["", f"evidence: `{json.dumps(d['evidence'], default=str)}`"]
    return "\n".join(lines)


def log_view(view: RunView, *, log_dir: str | Path | None) -> Path:
    """Write the events to ``<log_dir>/<run name>`` (default ``<run_dir>/tensorboard``);
    returns the folder. Logging a run again replaces its earlier event files there, so the
    scalars of one run are never doubled."""
    target = Path(log_dir) / view.name if log_dir else view.run_dir / "tensorboard"
    for old in target.glob("events.out.tfevents.*"):
        old.unlink()
    writer = _writer(target)
    try:
        for name, value, step in view.scalars:
            writer.add_scalar(name, value, step)
        final_step = max((s for _, _, s in view.scalars), default=0)
        for name, value in view.summary_metrics.items():
            writer.add_scalar(name.replace(".", "/", 1), value, final_step)
        for d in view.decisions:
            writer.add_text("agent/decisions", _decision_text(d), int(d.get("step") or 0))
        summary = "\n".join(f"- {k}: `{v}`" for k, v in sorted(view.tags.items()))
        writer.add_text("nora/summary", summary, final_step)
        writer.add_text("nora/config", "\n".join(f"- {k} = `{v}`"
                                                 for k, v in sorted(view.params.items())), 0)
    finally:
        writer.close()
    return target
