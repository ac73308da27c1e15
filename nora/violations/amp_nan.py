"""fp16 autocast with a static loss scale and no GradScaler: gradients overflow to inf,
and one optimizer step later the weights are NaN."""
from __future__ import annotations

from typing import Any

from nora.violations.base import BaseViolation, Fix


class AmpNan(BaseViolation):
    name = "amp_nan"
    severity = "high"
    scope = "runtime"
    events = frozenset({"step"})

    def inject(self, run) -> None:
        k = run.knobs
        k.amp, k.grad_scaler = True, False
        k.static_loss_scale = run.config.violation.loss_scale

    def detect(self, run, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        if info.get("finite", True):
            return None
        return {"loss": info.get("loss"), "nonfinite_grads": info.get("nonfinite_grads", []),
                "amp": run.knobs.amp, "grad_scaler": run.knobs.grad_scaler,
                "static_loss_scale": run.knobs.static_loss_scale}

    def fix(self, run) -> Fix:
        return Fix("enable_grad_scaler", {"dynamic_loss_scaling": True, "skip_step": True})

    def apply(self, run, evidence: dict[str, Any]) -> None:
        run.trainer.enable_grad_scaler()

    def validate(self, run) -> bool:
        return run.knobs.grad_scaler and run.knobs.static_loss_scale is None
