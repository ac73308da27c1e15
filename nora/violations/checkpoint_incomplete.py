"""Checkpoints that keep only the weights: a resume restarts the optimizer, the schedule
and every RNG, so it parts ways with the uninterrupted run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nora.checkpoint import FULL_STATE, audit, load_checkpoint
from nora.violations.base import BaseViolation, Fix


class CheckpointIncomplete(BaseViolation):
    name = "checkpoint_incomplete"
    severity = "high"
    scope = "runtime"
    events = frozenset({"checkpoint"})

    def inject(self, run) -> None:
        run.knobs.checkpoint_parts = ("model", "position")

    def detect(self, run, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        path, saved = info.get("path"), info.get("saved")
        if path is None:
            return None
        missing = audit(saved if saved is not None else load_checkpoint(path))
        return {"path": str(path), "missing": missing} if missing else None

    def fix(self, run) -> Fix:
        return Fix("save_full_state", {"parts": list(FULL_STATE)})

    def apply(self, run, evidence: dict[str, Any]) -> None:
        run.knobs.checkpoint_parts = FULL_STATE
        path = evidence["path"]
        run.note_checkpoint(Path(path), run.trainer.save_checkpoint(path))

    def validate(self, run) -> bool:
        path = run.last_checkpoint
        return path is not None and not audit(load_checkpoint(path))
