"""The clean baseline: nothing injected."""
from __future__ import annotations

from nora.context import RunContext
from nora.violations.base import BaseViolation, Fix


class NoViolation(BaseViolation):
    name = "none"
    severity = "low"

    def inject(self, ctx: RunContext) -> None:
        return None

    def fix(self, ctx: RunContext) -> Fix:
        return Fix("none", {})
