"""The norm-enforcement agent: turns a finding into a decision according to the regime.

The agent returns its decisions (and the seam settings a fix changed); the monitor records
them and stops the run on a halt, so the agent knows nothing of runs or records.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from nora.config.schema import RegimePolicy
from nora.context import RunContext
from nora.violations.base import Violation

Change = tuple[str, Any, Any]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Agent:
    """strict halts (suggesting the fix), balanced fixes and validates by measurement
    (retrying up to ``max_retries``, tolerating up to ``violation_tolerance`` low-severity
    findings), exploratory only logs."""

    def __init__(self, policy: RegimePolicy, mode: str) -> None:
        self.policy, self.mode = policy, mode
        self.tolerated = 0
        self.remediation_success = 0

    def _decision(self, action: str, v: Violation | None, message: str, *,
                  evidence: dict[str, Any], fix: dict[str, Any] | None, event: str,
                  **extra: Any) -> dict[str, Any]:
        return {"timestamp": _now(), "event_type": "AGENT_DECISION", "agent_action": action,
                "violation_name": v.name if v else None,
                "violation_severity": v.severity if v else None,
                "regime": self.policy.name, "mode": self.mode, "message": message,
                "suggested_fix": fix, "evidence": evidence, "event": event,
                "fix": fix["action"] if fix else None, **extra}

    def handle(self, v: Violation, evidence: dict[str, Any], event: str,
               ctx: RunContext) -> tuple[dict[str, Any], list[Change]]:
        """One decision for one finding, and the seam settings it changed."""
        p, fix = self.policy, v.fix(ctx).to_dict()
        tag = p.name.upper()
        say = dict(evidence=evidence, fix=fix, event=event)
        if p.halt_on_violations:
            return self._decision("halt", v, f"{tag}: halting on {v.name} ({v.severity}) at "
                                  f"{event}; suggested fix: {fix['action']} {fix['parameters']}",
                                  **say), []
        if not p.auto_fix:
            return self._decision("log", v, f"{tag}: logged {v.name} ({v.severity}); run "
                                  "unchanged", **say), []
        if v.severity == "low" and self.tolerated < p.violation_tolerance:
            self.tolerated += 1
            return self._decision("tolerate", v, f"{tag}: tolerating low-severity {v.name} "
                                  f"({self.tolerated}/{p.violation_tolerance})", **say), []
        changes: list[Change] = []
        for attempt in range(1, p.max_retries + 1):
            before = ctx.settings()
            v.apply(ctx, evidence)
            after = ctx.settings()
            changes += [(k, before[k], after[k]) for k in after if before[k] != after[k]]
            if v.validate(ctx):
                self.remediation_success += 1
                return self._decision("auto_fix", v, f"{tag}: auto-fixed {v.name}, validated",
                                      **say, attempts=attempt, validated=True), changes
        return self._decision("halt", v, f"{tag}: fix {fix['action']} for {v.name} failed "
                              f"validation {p.max_retries} times; halting", **say,
                              attempts=p.max_retries, validated=False), changes

    def adjust_lr(self, old: float, new: float, reason: str, evidence: dict[str, Any], *,
                  tracked: bool) -> dict[str, Any]:
        """The agent steering training (not a violation): a lower LR on a plateau."""
        return self._decision("adjust", None, f"adjusted train.lr {old:g} -> {new:g}: {reason}",
                              evidence=evidence, fix={"action": "reduce_lr",
                                                      "parameters": {"lr": new}},
                              event="eval", tracked=tracked)
