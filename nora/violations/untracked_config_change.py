"""A hyperparameter changed mid-run without a record: the recorded config no longer
describes the run, so replaying it cannot reproduce it."""
from __future__ import annotations

from typing import Any

from nora.context import RunContext
from nora.violations.base import BaseViolation, Fix


class UntrackedConfigChange(BaseViolation):
    name = "untracked_config_change"
    severity = "high"
    scope = "runtime"
    events = frozenset({"step"})

    def inject(self, ctx: RunContext) -> None:
        return None  # the edit happens mid-run, in on_step

    def on_step(self, ctx: RunContext, step: int) -> bool:
        """The injection proper: someone edits the learning rate by hand at one step."""
        at = max(1, int(ctx.total_steps * ctx.config.violation.at_fraction))
        if step != min(at, max(ctx.total_steps - 1, 0)):  # short runs still get the edit
            return False
        ctx.optim.set_base(ctx.optim.base_lr * ctx.config.violation.lr_factor)
        return True

    def detect(self, ctx: RunContext, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        recorded = ctx.recorded["train.lr"]
        groups = ctx.optim.mismatches(recorded)
        if not groups:
            return None
        return {"key": "train.lr", "recorded": recorded, "actual": ctx.optim.base_lr,
                "param_groups": groups}

    def fix(self, ctx: RunContext) -> Fix:
        return Fix("record_config_change", {"key": "train.lr", "value": ctx.optim.base_lr})

    def apply(self, ctx: RunContext, evidence: dict[str, Any]) -> None:
        ctx.record_change("train.lr", evidence["recorded"], evidence["actual"],
                          source="agent:record_untracked", force=True)

    def validate(self, ctx: RunContext) -> bool:
        return not ctx.optim.mismatches(ctx.recorded["train.lr"])
