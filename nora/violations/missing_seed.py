"""Training without a seed: every generator starts from OS entropy, so reruns differ."""
from __future__ import annotations

from typing import Any

from nora.seeding import entropy_seed
from nora.violations.base import BaseViolation, Fix

DEFAULT_SEED = 42


class MissingSeed(BaseViolation):
    name = "missing_seed"
    severity = "medium"
    scope = "startup"
    events = frozenset({"startup"})

    def inject(self, run) -> None:
        run.knobs.seed = entropy_seed()
        run.knobs.seeded = False

    def detect(self, run, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        if run.knobs.seeded:
            return None
        return {"seed": None, "generators": "seeded from OS entropy; reruns cannot match"}

    def _target(self, run) -> int:
        return run.config.seed if run.config.seed is not None else DEFAULT_SEED

    def fix(self, run) -> Fix:
        return Fix("set_seed", {"seed": self._target(run), "deterministic": True})

    def apply(self, run, evidence: dict[str, Any]) -> None:
        target = self._target(run)
        run.knobs.seed, run.knobs.seeded = target, True

    def validate(self, run) -> bool:
        return run.knobs.seeded and run.knobs.seed == self._target(run)
