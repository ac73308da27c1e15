"""Evaluation with the model in train mode: dropout stays on and batch norm uses (and
updates) batch statistics, so repeated evaluations differ and the model drifts."""
from __future__ import annotations

from typing import Any

from nora.context import RunContext
from nora.violations.base import BaseViolation, Fix


class EvalModeBug(BaseViolation):
    name = "eval_mode_bug"
    severity = "high"
    scope = "startup"
    events = frozenset({"eval"})

    def inject(self, ctx: RunContext) -> None:
        ctx.evaluation.set_eval_mode = False

    def detect(self, ctx: RunContext, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        active = info.get("active_stochastic_modules", [])
        if not (info.get("model_training") and active):
            return None
        return {"model.training": True, "active_stochastic_modules": active}

    def fix(self, ctx: RunContext) -> Fix:
        return Fix("force_eval_mode", {"model.eval()": True})

    def apply(self, ctx: RunContext, evidence: dict[str, Any]) -> None:
        ctx.evaluation.force_eval_mode()

    def validate(self, ctx: RunContext) -> bool:
        return ctx.evaluation.repeatable()
