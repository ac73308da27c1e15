"""Evaluation with the model in train mode: dropout stays on and batch norm uses (and
updates) batch statistics, so repeated evaluations differ and the model drifts."""
from __future__ import annotations

from typing import Any

from nora.violations.base import BaseViolation, Fix


class EvalModeBug(BaseViolation):
    name = "eval_mode_bug"
    severity = "high"
    scope = "startup"
    events = frozenset({"eval"})
    applies_to = frozenset({"supervised"})  # PPO's policy has no dropout or batch norm

    def inject(self, run) -> None:
        run.knobs.eval_mode = False

    def detect(self, run, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        if not info.get("model_training", False):
            return None
        return {"model.training": True,
                "stochastic_modules": info.get("stochastic_modules", [])}

    def fix(self, run) -> Fix:
        return Fix("force_eval_mode", {"model.eval()": True})

    def apply(self, run, evidence: dict[str, Any]) -> None:
        run.knobs.eval_mode = True

    def validate(self, run) -> bool:
        return run.trainer.evals_repeatable()
