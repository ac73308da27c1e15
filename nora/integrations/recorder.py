"""The run directory and the regime every integration shares (Lightning, SB3, plain loops).

A framework adapter reads what its framework really does and calls ``Recorder``: ``step``
for each optimizer step (loss bits, batch hash, RNG hash, every param group's LR, a parameter
hash every ``hash_every`` steps), ``found`` for each violation it observed (a *finding*, with
its evidence), ``finish`` at the end. ``found`` applies the regime: ``strict`` raises
``NormViolationError``, ``balanced`` runs the adapter's fix and validates it by measurement,
``exploratory`` only records. The layout is NORA's run directory, so ``nora compare``,
``nora.check_resume`` and the session report read these runs like any other.
"""
from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from nora.errors import ConfigError, NormViolationError
from nora.hashing import fingerprint, tensor_hashes
from nora.records import JsonlWriter, environment, write_json

__all__ = ["MODES", "REGIMES", "RUNTIME", "SEVERITY", "MonitorResult", "Recorder"]

MODES = ("pipeline", "agentic", "norm_aware")
REGIMES = ("strict", "balanced", "exploratory")
SEVERITY = {"missing_seed": "medium", "nondeterminism_enabled": "high",
            "untracked_config_change": "high", "amp_nan": "high", "eval_mode_bug": "high",
            "aug_leak": "medium", "checkpoint_incomplete": "high"}
RUNTIME = frozenset({"amp_nan", "untracked_config_change", "checkpoint_incomplete"})


def _choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{owner}: {name}={value!r} is not one of {', '.join(choices)}")
    return value


def _bits(x: float) -> str:
    return struct.pack(">f", x).hex()


_ENV: dict[str, dict[str, Any]] = {}


def _environment(device: str) -> dict[str, Any]:
    """``nora.records.environment`` once per process and device (versions and the git
    commit do not change within a process; two git calls cost tens of ms a fit); the
    thread count is read each time."""
    if device not in _ENV:
        _ENV[device] = environment(device)
    return dict(_ENV[device], torch_threads=torch.get_num_threads())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class MonitorResult:
    """What a monitored run recorded; ``nora.compare`` accepts it like a ``RunResult``."""

    run_dir: Path
    status: str
    fingerprint: str | None
    losses: list[float]
    findings: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    outcome: str
    state: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)


class Recorder:
    """One monitored run: its records on disk and the regime's answer to each finding."""

    def __init__(self, framework: str, *, mode: str = "norm_aware", regime: str = "balanced",
                 run_dir: str | Path | None = None, hash_every: int = 10) -> None:
        owner = f"nora.integrations ({framework})"
        self.framework = framework
        self.mode = _choice(owner, "mode", mode, MODES)
        self.regime = _choice(owner, "regime", regime, REGIMES)
        if not isinstance(hash_every, int) or isinstance(hash_every, bool) or hash_every < 1:
            raise ConfigError(f"{owner}: hash_every={hash_every!r} must be an int >= 1")
        self.hash_every = hash_every
        if run_dir is None:
            stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
            run_dir = Path("runs") / f"{framework}_{stamp}"
        self.run_dir = Path(run_dir)
        self.findings: list[dict[str, Any]] = []
        self.decisions: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []
        self.losses: list[float] = []
        self.occurrences: dict[str, int] = {}
        self.manifest: dict[str, Any] = {}
        self.t0 = time.perf_counter()
        self._seen: set[tuple[str, str]] = set()
        self.finished = False
        self.fingerprint: str | None = None
        self._steps: JsonlWriter | None = None
        self._decisions: JsonlWriter | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, **info: Any) -> None:
        """Open the records and write the manifest (status ``running``)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self._steps is None:
            self._steps = JsonlWriter(self.run_dir / "metrics.jsonl")
            self._decisions = JsonlWriter(self.run_dir / "norms" / "agent_decisions.jsonl")
        self.manifest = {"status": "running", "framework": self.framework, "mode": self.mode,
                         "regime": self.regime, "config_changes": self.changes,
                         "env": _environment(info.pop("device", "cpu")),
                         "started_at": datetime.now().isoformat(timespec="seconds"), **info}
        write_json(self.run_dir / "manifest.json", self.manifest)

    def watches(self, violation: str) -> bool:
        """pipeline watches nothing, agentic the runtime violations, norm_aware every one."""
        return self.mode == "norm_aware" or (self.mode == "agentic" and violation in RUNTIME)

    def step(self, step: int, *, loss: float | None, epoch: int | None = None,
             batch: Any = None, lrs: list[float] | None = None, params: Any = None,
             **extra: Any) -> dict[str, Any]:
        """One step record; ``params`` (a module or state dict) is hashed every k steps."""
        rec: dict[str, Any] = {"kind": "step", "step": step, "epoch": epoch}
        if loss is not None:
            loss = float(loss)
            self.losses.append(loss)
            rec.update(loss=loss, loss_bits=_bits(loss))
        if batch is not None:
            rec["batch_hash"] = fingerprint(batch)[:16]
        rec["rng_hash"] = fingerprint(torch.get_rng_state())[:16]
        if lrs is not None:
            rec["lrs"] = list(lrs)
        if params is not None and step % self.hash_every == 0:
            rec["param_hash"] = fingerprint(params)
        rec.update(extra)
        if self._steps is not None:
            self._steps.write(rec)
        return rec

    def record_change(self, key: str, old: Any, new: Any, *, step: int, source: str) -> None:
        """A tracked config change (what a replay needs to apply the same change)."""
        self.changes.append({"key": key, "old": old, "new": new, "step": step,
                             "source": source})

    # ------------------------------------------------------------------ findings
    def found(self, violation: str, *, event: str, step: int, evidence: dict[str, Any],
              message: str, hint: str, fix: Callable[[], bool] | None = None,
              key: str = "") -> str | None:
        """Record a finding and answer it per regime; returns the action taken (None if not
        watched, or already answered for this ``key``: then ``balanced`` repeats the fix
        without a new finding, e.g. every later overflowing step is skipped too).

        ``fix`` applies the repair and returns whether a measurement confirms it; it is
        called only in ``balanced``. Raises NormViolationError in ``strict``.
        """
        if not self.watches(violation):
            return None
        self.occurrences[violation] = self.occurrences.get(violation, 0) + 1
        if (violation, key) in self._seen:
            if self.regime == "balanced" and fix is not None:
                fix()
            return None
        self._seen.add((violation, key))
        severity = SEVERITY[violation]
        self.findings.append({"violation": violation, "severity": severity,
                              "source": "present", "event": event, "step": step,
                              "evidence": evidence, "false_positive": False,
                              "message": message})
        tag = self.regime.upper()
        if self.regime == "strict":
            text = (f"{tag}: halting on {violation} ({severity}) at {event} (step {step}): "
                    f"{message}. Hint: {hint}")
            self._decide("halt", violation, text, evidence, hint, event, step)
            if not self.finished:
                self.finish(status="halted")
            raise NormViolationError(text, violation=violation,
                                     suggested_fix={"action": hint, "parameters": {}})
        if self.regime == "exploratory":
            self._decide("log", violation, f"{tag}: logged {violation}: {message}",
                         evidence, hint, event, step)
            return "log"
        if fix is None:
            self._decide("warn", violation, f"{tag}: {violation} cannot be fixed by NORA "
                         f"here: {message}. Hint: {hint}", evidence, hint, event, step)
            return "warn"
        validated = bool(fix())
        action = "auto_fix" if validated else "warn"
        what = "auto-fixed, validated" if validated else "fix applied but NOT validated"
        self._decide(action, violation, f"{tag}: {violation} {what}: {message}", evidence,
                     hint, event, step, validated=validated)
        return action

    def _decide(self, action: str, violation: str, message: str, evidence: dict[str, Any],
                hint: str, event: str, step: int, **extra: Any) -> None:
        record = {"timestamp": _now(), "event_type": "AGENT_DECISION", "agent_action": action,
                  "violation_name": violation, "violation_severity": SEVERITY[violation],
                  "regime": self.regime, "mode": self.mode, "message": message,
                  "suggested_fix": {"action": hint, "parameters": {}}, "evidence": evidence,
                  "event": event, "step": step,
                  "time_since_start_sec": round(time.perf_counter() - self.t0, 6), **extra}
        self.decisions.append(record)
        if self._decisions is not None:
            self._decisions.write(record)
        elif self.finished:          # a finding after the run ended (a save after fit)
            writer = JsonlWriter(self.run_dir / "norms" / "agent_decisions.jsonl")
            writer.write(record)
            writer.close()
            self._write_norms()
            self.manifest["outcome"] = self.outcome
            write_json(self.run_dir / "manifest.json", self.manifest)

    @property
    def outcome(self) -> str:
        actions = {d["agent_action"] for d in self.decisions}
        for action, outcome in (("halt", "halted"), ("warn", "logged"), ("auto_fix", "fixed"),
                                ("log", "logged"), ("tolerate", "tolerated")):
            if action in actions:
                return outcome
        return "clean"

    # ------------------------------------------------------------------ end
    def finish(self, state: dict[str, Any] | None = None, *, status: str = "done",
               **info: Any) -> MonitorResult:
        """Write the final state (``state/final.pt``), the norms files and the manifest."""
        self.finished = True
        fp = None
        if state:
            fp = fingerprint(state)
            (self.run_dir / "state").mkdir(parents=True, exist_ok=True)
            torch.save(state, self.run_dir / "state" / "final.pt")
            write_json(self.run_dir / "state" / "tensors.json",
                       {"hashes": tensor_hashes(state)})
        self.fingerprint = fp
        self._write_norms()
        finite = [x for x in self.losses if math.isfinite(x)]
        self.manifest.update(status=status, fingerprint=fp, outcome=self.outcome,
                             steps_recorded=len(self.losses), **info,
                             final_loss=finite[-1] if finite else None,
                             finished_at=datetime.now().isoformat(timespec="seconds"),
                             duration_sec=round(time.perf_counter() - self.t0, 3))
        write_json(self.run_dir / "manifest.json", self.manifest)
        for writer in (self._steps, self._decisions):
            if writer is not None:
                writer.close()
        self._steps = self._decisions = None
        return MonitorResult(self.run_dir, status, fp, list(self.losses), list(self.findings),
                             list(self.decisions), self.outcome, dict(state or {}))

    def _write_norms(self) -> None:
        actions = [d["agent_action"] for d in self.decisions]
        severity: dict[str, int] = {}
        for f in self.findings:
            severity[f["severity"]] = severity.get(f["severity"], 0) + 1
        write_json(self.run_dir / "norms" / "agent_metrics.json", {
            "total_decisions": len(actions), "auto_fixes": actions.count("auto_fix"),
            "halts": actions.count("halt"), "warnings": actions.count("warn"),
            "logs": actions.count("log"), "adjustments": 0,
            "remediation_success_count": actions.count("auto_fix"),
            "regime": self.regime, "mode": self.mode})
        write_json(self.run_dir / "norms" / "reproducibility_metrics.json", {
            "violations_injected": [], "findings": self.findings,
            "violations_detected": len({f["violation"] for f in self.findings}),
            "first_detection_step": self.findings[0]["step"] if self.findings else None,
            "severity_breakdown": severity, "false_positives": 0,
            "occurrences": dict(self.occurrences), "outcome": self.outcome,
            "fingerprint": self.fingerprint, "verdicts": {}})
