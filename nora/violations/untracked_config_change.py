"""A hyperparameter changed mid-run without a record: the recorded config no longer
describes the run, so replaying it cannot reproduce it."""
from __future__ import annotations

import time
from typing import Any

from nora.violations.base import BaseViolation, Fix


class UntrackedConfigChange(BaseViolation):
    name = "untracked_config_change"
    severity = "high"
    scope = "runtime"
    events = frozenset({"step"})

    def inject(self, run) -> None:
        run.knobs.extra["untracked_lr_edit"] = True

    def on_step(self, run, step: int) -> None:
        """The injection proper: someone edits the learning rate by hand at one step."""
        if not run.knobs.extra.get("untracked_lr_edit"):
            return
        at = max(1, int(run.total_steps * run.config.violation.at_fraction))
        if step == min(at, max(run.total_steps - 1, 0)):  # short runs still get the edit
            run.trainer.set_lr(run.trainer.base_lr * run.config.violation.lr_factor)
            run.injected_t = time.perf_counter()

    def detect(self, run, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        if run.trainer is None:
            return None
        actual, recorded = run.trainer.base_lr, run.tracked["train.lr"]
        if actual == recorded:
            return None
        return {"key": "train.lr", "recorded": recorded, "actual": actual}

    def fix(self, run) -> Fix:
        return Fix("record_config_change", {"key": "train.lr", "value": run.trainer.base_lr})

    def apply(self, run, evidence: dict[str, Any]) -> None:
        run.record_change("train.lr", evidence["recorded"], evidence["actual"],
                          source="agent:record_untracked", force=True)

    def validate(self, run) -> bool:
        return run.trainer.base_lr == run.tracked["train.lr"]
