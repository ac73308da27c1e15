"""The one table of expected outcomes (mode x regime x violation), and how a run's
decisions become its actual outcome."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

Outcome = Literal["clean", "halted", "fixed", "tolerated", "logged", "undetected"]
OUTCOMES: tuple[str, ...] = ("clean", "halted", "fixed", "tolerated", "logged", "undetected")
_BY_REGIME = {"strict": "halted", "balanced": "fixed", "exploratory": "logged"}


def observes(mode: str, violation: str) -> bool:
    """Whether an agent in ``mode`` watches for ``violation`` at all."""
    from nora.violations import runtime_names

    if mode == "norm_aware":
        return True
    return mode == "agentic" and violation in runtime_names()


def configured_violations(config: Any) -> frozenset[str]:
    """Violations the configuration itself has, with nothing injected: ``seed=null`` is a
    missing seed, determinism switched off in ``repro`` is nondeterminism. Findings of these
    are true findings, never false positives."""
    found = set()
    if config.seed is None:
        found.add("missing_seed")
    if not config.repro.deterministic or config.repro.cudnn_benchmark:
        found.add("nondeterminism_enabled")
    return frozenset(found)


def case_violation(config: Any) -> str:
    """The violation a run is expected to show: the injected one, else one its
    configuration has (``seed=null``), else ``none``."""
    if config.violation.name != "none":
        return config.violation.name
    return min(configured_violations(config), default="none")


def expected_outcome(mode: str, regime: str, violation: str, *,
                     severity: str | None = None, tolerance: int = 0) -> Outcome:
    """The outcome the design promises for one case.

    A low-severity violation within the balanced regime's tolerance is tolerated, not fixed.
    """
    from nora.violations import get_violation

    v = get_violation(violation)
    if violation == "none":
        return "clean"
    if mode == "pipeline" or not observes(mode, violation):
        return "undetected"
    sev = severity or v.severity
    if regime == "balanced" and sev == "low" and tolerance > 0:
        return "tolerated"
    return _BY_REGIME[regime]  # type: ignore[return-value]


def actual_outcome(injected: str, decisions: Iterable[Mapping[str, Any]]) -> Outcome:
    """What happened, read from the decisions alone (``adjust`` ones are not violations)."""
    actions = [d["agent_action"] for d in decisions if d["agent_action"] != "adjust"]
    if "halt" in actions:
        return "halted"
    if "auto_fix" in actions:
        return "fixed"
    if "tolerate" in actions:
        return "tolerated"
    if "log" in actions:
        return "logged"
    return "clean" if injected == "none" else "undetected"
