"""The protocol every violation implements; adding one is adding one module."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from nora.run import Run

Severity = Literal["low", "medium", "high"]
Scope = Literal["startup", "runtime"]
Event = Literal["startup", "step", "eval", "checkpoint"]


@dataclass(frozen=True)
class Fix:
    """A remedy: what the agent suggests (strict) or applies (balanced)."""

    action: str
    parameters: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "parameters": dict(self.parameters)}


class Violation(Protocol):
    """One reproducibility norm: how to break it for real, see it broken, and mend it.

    ``scope`` is ``runtime`` when the violation shows while training runs (the agentic
    agent watches those); ``startup`` ones are structural and only the norm_aware agent
    checks them. ``events`` are the monitor events at which ``detect`` is asked.
    """

    name: ClassVar[str]
    severity: ClassVar[Severity]
    scope: ClassVar[Scope]
    events: ClassVar[frozenset[str]]
    applies_to: ClassVar[frozenset[str]]

    def inject(self, run: Run) -> None:
        """Change the run's knobs so the violation has its real effect."""

    def detect(self, run: Run, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        """Evidence that the violation is present at this event, or None."""

    def fix(self, run: Run) -> Fix:
        """Describe the remedy (without applying it)."""

    def apply(self, run: Run, evidence: dict[str, Any]) -> None:
        """Apply the remedy to the live run."""

    def validate(self, run: Run) -> bool:
        """Check, by measurement where possible, that the remedy took."""


class BaseViolation:
    """Defaults shared by the concrete violations."""

    name: ClassVar[str] = ""
    severity: ClassVar[Severity] = "high"
    scope: ClassVar[Scope] = "startup"
    events: ClassVar[frozenset[str]] = frozenset()
    applies_to: ClassVar[frozenset[str]] = frozenset({"supervised", "ppo"})

    def inject(self, run: Run) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def detect(self, run: Run, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def fix(self, run: Run) -> Fix:  # pragma: no cover - overridden
        raise NotImplementedError

    def apply(self, run: Run, evidence: dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def validate(self, run: Run) -> bool:
        return self.detect(run, "startup", {}) is None
