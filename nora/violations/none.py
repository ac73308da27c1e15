"""The clean baseline: nothing injected."""
from __future__ import annotations

from nora.violations.base import BaseViolation, Fix


class NoViolation(BaseViolation):
    name = "none"
    severity = "low"

    def inject(self, run) -> None:
        return None

    def fix(self, run) -> Fix:
        return Fix("none", {})
