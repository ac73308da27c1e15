"""Training without a seed: every generator starts from OS entropy, so reruns differ."""
from __future__ import annotations

from typing import Any

from nora.context import RunContext
from nora.seeding import entropy_seed
from nora.violations.base import BaseViolation, Fix

DEFAULT_SEED = 42


class MissingSeed(BaseViolation):
    name = "missing_seed"
    severity = "medium"
    scope = "startup"
    events = frozenset({"startup"})

    def inject(self, ctx: RunContext) -> None:
        ctx.generators.reseed(entropy_seed(), "entropy")

    def detect(self, ctx: RunContext, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        unseeded = sorted(k for k, src in ctx.generators.provenance.items() if src != "config")
        if not unseeded:
            return None
        return {"streams": unseeded, "source": ctx.generators.source,
                "entropy_seed": ctx.seed,
                "why": "generators start from OS entropy: reruns differ (the drawn seed is "
                       "recorded so a replay can still reproduce this run)"}

    def _target(self, ctx: RunContext) -> int:
        return ctx.config.seed if ctx.config.seed is not None else DEFAULT_SEED

    def fix(self, ctx: RunContext) -> Fix:
        return Fix("set_seed", {"seed": self._target(ctx)})

    def apply(self, ctx: RunContext, evidence: dict[str, Any]) -> None:
        ctx.generators.reseed(self._target(ctx), "config")
