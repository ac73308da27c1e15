"""Checkpoints that keep only the weights and position: a resume restarts the optimizer,
the schedule and every RNG, so it parts ways with the uninterrupted run."""
from __future__ import annotations

from typing import Any

from nora.context import RunContext
from nora.seams import audit_contents
from nora.violations.base import BaseViolation, Fix

DROPPED = ("optimizer", "scheduler", "scaler", "rng", "agent")


class CheckpointIncomplete(BaseViolation):
    name = "checkpoint_incomplete"
    severity = "high"
    scope = "runtime"
    events = frozenset({"checkpoint"})

    def inject(self, ctx: RunContext) -> None:
        ctx.checkpoints.drop = DROPPED

    def _missing(self, ctx: RunContext, *, from_disk: bool = False) -> list[str]:
        state = ctx.checkpoints.read_last(from_disk=from_disk)  # as written, not as meant
        if state is None:
            return []
        return audit_contents(state, steps_done=ctx.step,
                              amp=ctx.precision.scaler is not None,
                              scheduled=ctx.optim.optimizer is not None)

    def detect(self, ctx: RunContext, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        missing = self._missing(ctx)
        return {"path": info.get("path"), "missing": missing} if missing else None

    def fix(self, ctx: RunContext) -> Fix:
        return Fix("save_full_state", {"drop": []})

    def apply(self, ctx: RunContext, evidence: dict[str, Any]) -> None:
        ctx.checkpoints.drop = ()
        ctx.checkpoints.resave()

    def validate(self, ctx: RunContext) -> bool:
        return not self._missing(ctx, from_disk=True)  # the re-written file, read back
