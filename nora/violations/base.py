"""The protocol every violation implements; adding one is adding one module and one
entry-point line (group ``nora.violations``).

A violation acts only through the seams of a ``RunContext``: ``inject`` breaks a seam the way
real code does, ``detect`` reads evidence from the live run (never a flag ``inject`` set),
``apply`` mends the seam and ``validate`` checks by measurement that the mend took.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from nora.context import RunContext

Severity = Literal["low", "medium", "high"]
Scope = Literal["startup", "runtime"]


@dataclass(frozen=True)
class Fix:
    """A remedy: what the agent suggests (strict) or applies (balanced)."""

    action: str
    parameters: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "parameters": dict(self.parameters)}


class Violation(Protocol):
    """``scope`` is ``runtime`` when the violation shows while training runs (the agentic
    agent watches those); ``startup`` ones are structural and only norm_aware checks them.
    ``events`` are the monitor events at which ``detect`` is asked."""

    name: ClassVar[str]
    severity: ClassVar[Severity]
    scope: ClassVar[Scope]
    events: ClassVar[frozenset[str]]

    def inject(self, ctx: RunContext) -> None: ...
    def detect(self, ctx: RunContext, event: str, info: dict[str, Any]) -> dict[str, Any] | None: ...
    def fix(self, ctx: RunContext) -> Fix: ...
    def apply(self, ctx: RunContext, evidence: dict[str, Any]) -> None: ...
    def validate(self, ctx: RunContext) -> bool: ...


class BaseViolation:
    """Defaults shared by the concrete violations."""

    name: ClassVar[str] = ""
    severity: ClassVar[Severity] = "high"
    scope: ClassVar[Scope] = "startup"
    events: ClassVar[frozenset[str]] = frozenset()

    def inject(self, ctx: RunContext) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def detect(self, ctx: RunContext, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def fix(self, ctx: RunContext) -> Fix:  # pragma: no cover - overridden
        raise NotImplementedError

    def apply(self, ctx: RunContext, evidence: dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def validate(self, ctx: RunContext) -> bool:
        return self.detect(ctx, "startup", {}) is None
