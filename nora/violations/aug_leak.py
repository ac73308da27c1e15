"""Random training augmentation applied to evaluation data: the metric depends on the
state of the augmentation generator, not only on the model."""
from __future__ import annotations

from typing import Any

from nora.violations.base import BaseViolation, Fix


class AugLeak(BaseViolation):
    name = "aug_leak"
    severity = "medium"
    scope = "startup"
    events = frozenset({"eval"})

    def inject(self, run) -> None:
        run.knobs.eval_augment = True

    def detect(self, run, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        probe = info.get("eval_transform_probe")
        if probe is None:
            return None
        same = probe()
        return None if same else {"eval_transform": "random: two passes over one batch differ"}

    def fix(self, run) -> Fix:
        return Fix("clean_eval_transform", {"eval_augment": False})

    def apply(self, run, evidence: dict[str, Any]) -> None:
        run.knobs.eval_augment = False

    def validate(self, run) -> bool:
        return run.trainer.evals_repeatable()
