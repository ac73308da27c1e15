"""The norm-enforcement agent: turns a detection into a decision according to the regime."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from nora.errors import NormViolationError

if TYPE_CHECKING:
    from nora.run import Run
    from nora.violations.base import Violation


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Agent:
    """Applies one regime policy; every decision is recorded with its evidence.

    strict halts (suggesting the fix), balanced fixes and validates (retrying up to
    ``max_retries``, tolerating up to ``violation_tolerance`` low-severity violations),
    exploratory only logs.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.policy = run.config.regime
        self.tolerated = 0
        self.remediation_success = 0

    def _decide(self, action: str, v: Violation | None, message: str, *,
                evidence: dict[str, Any], fix: dict[str, Any] | None, event: str,
                **extra: Any) -> dict[str, Any]:
        run = self.run
        record = {
            "timestamp": _now(),
            "event_type": "AGENT_DECISION",
            "agent_action": action,
            "violation_name": v.name if v else None,
            "violation_severity": v.severity if v else None,
            "regime": self.policy.name,
            "mode": run.config.mode.name,
            "message": message,
            "suggested_fix": fix,
            "evidence": evidence,
            "event": event,
            "step": run.step,
            "epoch": run.epoch,
            "time_since_start_sec": round(time.perf_counter() - run.t0, 6),
            **extra,
        }
        run.add_decision(record)
        return record

    def handle(self, v: Violation, evidence: dict[str, Any], event: str) -> None:
        """Answer one detection; raises NormViolationError when the run must stop."""
        p, fix = self.policy, v.fix(self.run).to_dict()
        tag = p.name.upper()
        if p.halt_on_violations:
            msg = (f"{tag}: halting on {v.name} ({v.severity}) at {event}; "
                   f"suggested fix: {fix['action']} {fix['parameters']}")
            self._decide("halt", v, msg, evidence=evidence, fix=fix, event=event)
            raise NormViolationError(msg, violation=v.name, suggested_fix=fix)
        if not p.auto_fix:
            self._decide("log", v, f"{tag}: logged {v.name} ({v.severity}); run unchanged",
                         evidence=evidence, fix=fix, event=event)
            return
        if v.severity == "low" and self.tolerated < p.violation_tolerance:
            self.tolerated += 1
            self._decide("tolerate", v, f"{tag}: tolerating low-severity {v.name} "
                         f"({self.tolerated}/{p.violation_tolerance})",
                         evidence=evidence, fix=fix, event=event)
            return
        for attempt in range(1, p.max_retries + 1):
            before = self.run.knobs.to_dict()
            v.apply(self.run, evidence)
            self._track_knobs(before, fix["action"])
            if v.validate(self.run):
                self.remediation_success += 1
                self._decide("auto_fix", v, f"{tag}: auto-fixed {v.name}, validated",
                             evidence=evidence, fix=fix, event=event, attempts=attempt,
                             validated=True)
                return
        msg = (f"{tag}: fix {fix['action']} for {v.name} failed validation "
               f"{p.max_retries} times; halting")
        self._decide("halt", v, msg, evidence=evidence, fix=fix, event=event,
                     attempts=p.max_retries, validated=False)
        raise NormViolationError(msg, violation=v.name, suggested_fix=fix)

    def _track_knobs(self, before: dict[str, Any], action: str) -> None:
        """Record each knob a fix changed, so a replay can re-apply the intervention."""
        after = self.run.knobs.to_dict()
        for key, new in after.items():
            if key != "extra" and before[key] != new:
                old = before[key] if (key != "seed" or before["seeded"]) else None
                self.run.record_change(f"knobs.{key}", old, new, source=f"agent:{action}")

    def adjust_lr(self, new_lr: float, reason: str, evidence: dict[str, Any]) -> None:
        """The agent steering training (not a violation): lower the LR on a plateau."""
        run = self.run
        old = run.trainer.base_lr
        run.trainer.set_lr(new_lr)
        run.record_change("train.lr", old, new_lr, source="agent:plateau")
        self._decide("adjust", None, f"adjusted train.lr {old:g} -> {new_lr:g}: {reason}",
                     evidence=evidence, fix={"action": "reduce_lr",
                                             "parameters": {"lr": new_lr}},
                     event="eval", tracked=run.config.mode.track_interventions)
