"""Random training augmentation applied to evaluation data: the metric depends on the
state of the augmentation generator, not only on the model."""
from __future__ import annotations

from typing import Any

from nora.context import RunContext
from nora.violations.base import BaseViolation, Fix


class AugLeak(BaseViolation):
    name = "aug_leak"
    severity = "medium"
    scope = "startup"
    events = frozenset({"eval"})

    def inject(self, ctx: RunContext) -> None:
        ctx.apply_setting("evaluation.transform", "augment")

    def detect(self, ctx: RunContext, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        x = ctx.evaluation.probe_input
        return ctx.evaluation.probe(x) if x is not None else None

    def fix(self, ctx: RunContext) -> Fix:
        return Fix("clean_eval_transform", {"eval_transform": None})

    def apply(self, ctx: RunContext, evidence: dict[str, Any]) -> None:
        ctx.apply_setting("evaluation.transform", None)

    def validate(self, ctx: RunContext) -> bool:
        x = ctx.evaluation.probe_input
        return x is None or ctx.evaluation.probe(x) is None
