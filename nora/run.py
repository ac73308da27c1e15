"""The monitor of one live run: it sees what the trainer does through the context, asks the
watched detectors at each event, turns detections into findings, records the agent's
decisions, and writes the per-step and per-eval records.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

from torch import nn

from nora.agent.agent import Agent
from nora.agent.outcomes import configured_violations, observes
from nora.config.schema import ConfigChange, RunConfig
from nora.context import RunContext
from nora.ddp_watch import heartbeat
from nora.errors import NormViolationError
from nora.hashing import record_digest
from nora.param_hash import StepHasher
from nora.records import JsonlWriter
from nora.violations import get_violation, watched_violations

EVENTS = ("startup", "step", "eval", "checkpoint")


class Run:
    def __init__(self, config: RunConfig, run_dir: Path, *, controlled: bool = True) -> None:
        self.config, self.run_dir, self.controlled = config, run_dir, controlled
        self.violation = get_violation(config.violation.name)
        self.ctx: RunContext | None = None
        self.t0 = self.injected_t = time.perf_counter()
        self.decisions: list[dict[str, Any]] = []
        self.findings: list[dict[str, Any]] = []
        self.changes: list[ConfigChange] = []
        self.occurrences: Counter[str] = Counter()
        self.tracked: dict[str, Any] = {"train.lr": config.train.lr}
        self.evals: list[dict[str, Any]] = []
        self.losses: list[float] = []
        self._plateau: list[float] = []
        self._silenced: set[str] = set()
        self._configured = configured_violations(config)
        self._pending = sorted((c for c in config.replay_changes if c.event != "startup"),
                               key=lambda c: c.step)
        self.event = "startup"
        self.agent = Agent(config.regime, config.mode.name) if config.mode.agent else None
        kind = config.trainer.name
        watched = [v for v in watched_violations(kind)
                   if self.agent and observes(config.mode.name, v.name)]
        self.watch = {e: [v for v in watched if e in v.events] for e in EVENTS}
        self._decisions_out = JsonlWriter(run_dir / "norms" / "agent_decisions.jsonl")
        self._metrics_out = JsonlWriter(run_dir / "metrics.jsonl")
        self._hash_every = config.repro.step_fingerprint_every
        self._param_hash = StepHasher()
        # audit records (nora verify): a parameter hash every step when checkpoints are kept,
        # its leaves (one hash per tensor) in state/step_hashes.jsonl
        self._audit = config.train.checkpoint_every > 0
        self._leaves_out = JsonlWriter(run_dir / "state" / "step_hashes.jsonl")
        self._leaf_names: list[str] | None = None

    def attach(self, ctx: RunContext) -> None:
        self.ctx = ctx
        ctx.recorded = self.tracked
        ctx.precision.check_finite = any(v.name == "amp_nan" for v in self.watch["step"])

    @property
    def checkpoints(self) -> dict[str, str]:
        """Every checkpoint written (relative path -> sha256), as last written."""
        if self.ctx is None:
            return {}
        return {str(p.relative_to(self.run_dir)): sha
                for p, sha in self.ctx.checkpoints.written.items()}

    @property
    def step(self) -> int:
        return self.ctx.step if self.ctx else 0

    # --- records -----------------------------------------------------------------
    def record_change(self, key: str, old: Any, new: Any, *, source: str,
                      force: bool = False) -> None:
        """A mid-run change joins the manifest when the mode tracks interventions
        (``force`` for fixes whose whole point is to record it)."""
        self.tracked[key] = new
        if force or self.config.mode.track_interventions:
            self.changes.append(ConfigChange(step=self.step, key=key, old=old, new=new,
                                             source=source, event=self.event))

    def apply_change(self, change: ConfigChange) -> None:
        """Re-apply one recorded change (replay): a base-LR change or a seam setting."""
        if change.key == "train.lr":
            self.ctx.optim.set_base(float(change.new))
        elif change.key.startswith("seams."):
            self.ctx.apply_setting(change.key[6:], change.new)
        self.tracked[change.key] = change.new

    def _apply_due(self, step: int) -> None:
        while self._pending and self._pending[0].step <= step:
            self.apply_change(self._pending.pop(0))

    def close(self) -> None:
        self._decisions_out.close()
        self._metrics_out.close()
        self._leaves_out.close()

    # --- monitor -------------------------------------------------------------------
    def emit(self, event: str, info: dict[str, Any]) -> None:
        """Ask every watched detector for this event; findings go to the agent."""
        self.event = event
        if event == "eval":
            self._apply_due(self.step)
        for v in self.watch[event]:
            if v.name in self._silenced:
                continue
            evidence = v.detect(self.ctx, event, info)
            if evidence is None:
                continue
            self.occurrences[v.name] += 1
            self._finding(v, event, evidence)
            if self.config.regime.auto_fix is False or v.severity == "low":
                self._silenced.add(v.name)
            decision, changes = self.agent.handle(v, evidence, event, self.ctx)
            for key, old, new in changes:
                self.record_change(f"seams.{key}", old, new, source=f"agent:{decision['fix']}")
            self._decide(decision)
            if decision["agent_action"] == "halt":
                raise NormViolationError(decision["message"], violation=v.name,
                                         suggested_fix=decision["suggested_fix"])

    def _finding(self, v: Any, event: str, evidence: dict[str, Any]) -> None:
        injected = v.name == self.config.violation.name
        present = v.name in self._configured
        # a built-in trainer's code is known clean, so a finding neither injected nor
        # configured is a false positive; in a user's code it may be real (None: unknown)
        false_positive = not (injected or present) if self.controlled else None
        self.findings.append({
            "violation": v.name, "severity": v.severity,
            "source": "injected" if injected else "present", "event": event,
            "step": self.step, "evidence": evidence, "false_positive": false_positive,
            "time_sec": time.perf_counter() - self.injected_t})

    def _decide(self, decision: dict[str, Any]) -> None:
        decision.pop("fix", None)
        decision.update(step=self.step, epoch=self.ctx.epoch if self.ctx else 0,
                        time_since_start_sec=round(time.perf_counter() - self.t0, 6))
        self.decisions.append(decision)
        self._decisions_out.write(decision)

    # --- observer hooks (called through the context) ---------------------------------
    def begin_step(self, step: int, epoch: int) -> None:
        self.event = "step"
        self._apply_due(step)
        on_step = getattr(self.violation, "on_step", None)
        if on_step is not None and on_step(self.ctx, step):
            self.injected_t = time.perf_counter()

    def end_step(self, record: dict[str, Any], model: nn.Module) -> None:
        heartbeat()  # a DDP rank's sign of progress (a no-op outside a spawned group)
        self.losses.append(record["loss"])
        leaves = None
        if self._audit or (self._hash_every and record["step"] % self._hash_every == 0):
            record["param_hash"], leaves = self._param_hash(model)
        self._metrics_out.write(record)
        if leaves is not None:
            names = sorted(leaves)
            if names != self._leaf_names:
                self._leaf_names = names
                self._leaves_out.write({"names": names})
            self._leaves_out.write({"step": record["step"], "leaves": [leaves[n] for n in names],
                                    "record": record_digest(record)})

    def on_eval(self, metrics: dict[str, Any]) -> None:
        heartbeat()
        rec = {"kind": "eval", "step": self.step, "epoch": self.ctx.epoch, **metrics}
        self.evals.append(rec)
        self._metrics_out.write(rec)
        if self.agent is not None:
            self._plateau_check()

    def _plateau_check(self) -> None:
        patience = self.config.mode.plateau_patience
        self._plateau.append(self.evals[-1]["loss"])
        losses = self._plateau
        if len(losses) <= patience:
            return
        best_before = min(losses[:-patience])
        if min(losses[-patience:]) >= best_before and math.isfinite(best_before):
            old = self.ctx.optim.base_lr
            new_lr = old * self.config.mode.plateau_factor
            self.ctx.optim.set_base(new_lr)
            self.record_change("train.lr", old, new_lr, source="agent:plateau")
            self._decide(self.agent.adjust_lr(
                old, new_lr, f"eval loss has not improved on {best_before:.4f} for {patience} "
                "evaluations", {"eval_losses": losses[-patience - 1:]},
                tracked=self.config.mode.track_interventions))
            self._plateau = losses[-1:]

    def agent_state(self) -> dict[str, Any]:
        """What the monitor and agent carry across steps, for checkpoints."""
        return {"plateau": list(self._plateau), "tracked_lr": float(self.tracked["train.lr"])}

    def load_agent_state(self, state: dict[str, Any]) -> None:
        self._plateau = [float(x) for x in state["plateau"]]
        self.tracked["train.lr"] = float(state["tracked_lr"])

    def on_checkpoint(self, path: Path, sha256: str) -> None:
        heartbeat()
        self.emit("checkpoint", {"path": str(path)})
