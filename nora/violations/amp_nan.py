"""fp16 autocast with a static loss scale and no GradScaler: gradients overflow to inf,
and one optimizer step later the weights are NaN."""
from __future__ import annotations

from typing import Any

from nora.context import RunContext
from nora.violations.base import BaseViolation, Fix


class AmpNan(BaseViolation):
    name = "amp_nan"
    severity = "high"
    scope = "runtime"
    events = frozenset({"step"})

    def inject(self, ctx: RunContext) -> None:
        ctx.precision.drop_scaler(ctx.config.violation.loss_scale)

    def detect(self, ctx: RunContext, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        if info.get("finite", True):
            return None
        p = ctx.precision
        return {"loss": info.get("loss"), "nonfinite_grads": info.get("nonfinite_grads", []),
                "amp": p.amp, "grad_scaler": p.scaler is not None,
                "static_loss_scale": p.static_loss_scale}

    def fix(self, ctx: RunContext) -> Fix:
        return Fix("enable_grad_scaler", {"dynamic_loss_scaling": True, "skip_step": True})

    def apply(self, ctx: RunContext, evidence: dict[str, Any]) -> None:
        ctx.precision.enable_scaler()

    def validate(self, ctx: RunContext) -> bool:
        # the overflowing step is skipped; dynamic scaling keeps later steps finite
        return ctx.precision.scaler is not None and ctx.precision.skip_next
