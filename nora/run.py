"""One live run: its knobs, records, monitor and agent, as the trainer sees them.

Trainers call the ``begin_step`` / ``check_step`` / ``end_step`` / ``eval_start`` /
``on_eval`` / ``on_checkpoint`` hooks; the monitor asks the watched violations' detectors
at each event and hands detections to the agent.
"""
from __future__ import annotations

import math
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

from nora.agent.agent import Agent
from nora.agent.outcomes import observes
from nora.config.schema import ConfigChange, RunConfig
from nora.hashing import record_digest, tensor_hashes, tree_hash
from nora.knobs import Knobs
from nora.records import JsonlWriter, write_json
from nora.violations import VIOLATIONS, get_violation

EVENTS = ("startup", "step", "eval", "checkpoint")


def float_bits(x: float) -> str:
    """The float32 bit pattern of a loss, so equal-looking losses can be told apart."""
    return struct.pack(">f", x).hex()


class Run:
    def __init__(self, config: RunConfig, run_dir: Path) -> None:
        self.config = config
        self.run_dir = run_dir
        self.knobs = Knobs.from_config(config)
        self.violation = get_violation(config.violation.name)
        self.trainer: Any = None
        self.step = 0
        self.epoch = 0
        self.total_steps = 0
        self.t0 = time.perf_counter()
        self.decisions: list[dict[str, Any]] = []
        self.changes: list[ConfigChange] = []
        self.detections: list[dict[str, Any]] = []
        self.occurrences: Counter[str] = Counter()
        self.tracked: dict[str, Any] = {"train.lr": config.train.lr, "seed": config.seed}
        self.last_checkpoint: Path | None = None
        self.checkpoints: dict[str, str] = {}
        self.evals: list[dict[str, Any]] = []
        self._plateau: list[float] = []
        self.losses: list[float] = []
        self._silenced: set[str] = set()
        self._pending = sorted((c for c in config.replay_changes if c.event != "startup"),
                               key=lambda c: c.step)
        self.event = "startup"
        self.injected_t = self.t0
        self.agent = Agent(self) if config.mode.agent else None
        kind = config.trainer.name
        watched = [v for n, v in VIOLATIONS.items()
                   if n != "none" and self.agent and observes(config.mode.name, n)
                   and kind in v.applies_to]
        self.watch = {e: [v for v in watched if e in v.events] for e in EVENTS}
        self.watches_amp = any(v.name == "amp_nan" for v in self.watch["step"])
        self._decisions_out = JsonlWriter(run_dir / "norms" / "agent_decisions.jsonl")
        self._metrics_out = JsonlWriter(run_dir / "metrics.jsonl")
        self._hash_every = config.repro.step_fingerprint_every
        # --- verify (issue 10): audit records: per-step param hash every step when
        # checkpoints are kept; its leaves (one hash per tensor) in state/step_hashes.jsonl
        self._audit = config.train.checkpoint_every > 0
        self._leaves_out = JsonlWriter(run_dir / "state" / "step_hashes.jsonl")
        self._leaf_names: list[str] | None = None
        # --- end verify

    # --- records -----------------------------------------------------------------
    def add_decision(self, record: dict[str, Any]) -> None:
        self.decisions.append(record)
        self._decisions_out.write(record)

    def record_change(self, key: str, old: Any, new: Any, *, source: str,
                      force: bool = False) -> None:
        """Note a mid-run change; it joins the manifest when the mode tracks interventions
        (``force`` for fixes whose whole point is to record it)."""
        self.tracked[key] = new
        if force or self.config.mode.track_interventions:
            self.changes.append(ConfigChange(step=self.step, key=key, old=old, new=new,
                                             source=source, event=self.event))

    def apply_change(self, change: ConfigChange) -> None:
        """Re-apply one recorded change (replay): a base-LR change or a knob setting."""
        if change.key == "train.lr":
            self.trainer.set_lr(float(change.new))
        elif change.key == "knobs.grad_scaler" and change.new and self.trainer is not None:
            self.trainer.enable_grad_scaler()
        elif change.key.startswith("knobs."):
            setattr(self.knobs, change.key[6:], change.new)
        self.tracked[change.key] = change.new

    def _apply_due(self, step: int) -> None:
        while self._pending and self._pending[0].step <= step:
            self.apply_change(self._pending.pop(0))

    def log(self, record: dict[str, Any]) -> None:
        self._metrics_out.write(record)

    def close(self) -> None:
        self._decisions_out.close()
        self._metrics_out.close()
        self._leaves_out.close()

    # --- monitor -------------------------------------------------------------------
    def emit(self, event: str, info: dict[str, Any] | None = None) -> None:
        """Ask every watched detector for this event; hand detections to the agent."""
        self.event = event
        for v in self.watch[event]:
            if v.name in self._silenced:
                self.occurrences[v.name] += 1
                continue
            evidence = v.detect(self, event, info or {})
            if evidence is None:
                continue
            self.occurrences[v.name] += 1
            self.detections.append({"violation": v.name, "severity": v.severity,
                                    "event": event, "step": self.step,
                                    "time_sec": time.perf_counter() - self.injected_t})
            if self.config.regime.auto_fix is False or v.severity == "low":
                self._silenced.add(v.name)
            self.agent.handle(v, evidence, event)

    # --- hooks called by trainers ---------------------------------------------------
    def begin_step(self, step: int, epoch: int) -> None:
        self.step, self.epoch = step, epoch
        self.event = "step"
        self._apply_due(step)
        on_step = getattr(self.violation, "on_step", None)
        if on_step is not None:
            on_step(self, step)

    def check_step(self, loss: float, grads_finite: bool = True,
                   nonfinite: list[str] | None = None) -> None:
        if self.watch["step"]:
            finite = math.isfinite(loss) and grads_finite
            self.emit("step", {"finite": finite, "loss": loss,
                               "nonfinite_grads": nonfinite or []})

    def end_step(self, loss: float, lr: float, model: Any, **extra: Any) -> None:
        self.losses.append(loss)
        rec = {"kind": "step", "step": self.step, "epoch": self.epoch, "loss": loss,
               "loss_bits": float_bits(loss), "lr": lr, **extra}
        leaves = None
        if self._audit or (self._hash_every and self.step % self._hash_every == 0):
            rec["param_hash"], leaves = tree_hash(model.state_dict())   # verify (issue 10)
        self.log(rec)
        if leaves is not None:                                           # verify (issue 10)
            names = sorted(leaves)
            if names != self._leaf_names:
                self._leaf_names = names
                self._leaves_out.write({"names": names})
            self._leaves_out.write({"step": self.step, "leaves": [leaves[n] for n in names],
                                    "record": record_digest(rec)})

    def eval_start(self, info: dict[str, Any]) -> None:
        self._apply_due(self.step)
        self.emit("eval", info)

    def on_eval(self, metrics: dict[str, Any]) -> None:
        rec = {"kind": "eval", "step": self.step, "epoch": self.epoch, **metrics}
        self.evals.append(rec)
        self.log(rec)
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
            new_lr = self.trainer.base_lr * self.config.mode.plateau_factor
            self.agent.adjust_lr(new_lr, f"eval loss has not improved on {best_before:.4f} "
                                 f"for {patience} evaluations",
                                 {"eval_losses": losses[-patience - 1:]})
            self._plateau = losses[-1:]

    def agent_state(self) -> dict[str, Any]:
        """What the monitor and agent carry across steps, for checkpoints."""
        return {"plateau": list(self._plateau),
                "tracked_lr": float(self.tracked["train.lr"])}

    def load_agent_state(self, state: dict[str, Any]) -> None:
        self._plateau = [float(x) for x in state["plateau"]]
        self.tracked["train.lr"] = float(state["tracked_lr"])

    def note_checkpoint(self, path: Path, sha256: str) -> None:
        self.last_checkpoint = path
        self.checkpoints[str(path.relative_to(self.run_dir))] = sha256

    def on_checkpoint(self, path: Path, sha256: str, saved: Any = None,
                      state: dict[str, Any] | None = None) -> None:
        """``saved`` is what was written (its top-level parts), for the audit; ``state`` the
        flat tensors, whose per-tensor hashes are kept for every checkpoint step."""
        self.note_checkpoint(path, sha256)
        if state is not None:
            write_json(self.run_dir / "state" / f"tensors_step{self.step}.json",
                       {"step": self.step, "checkpoint": path.name,
                        "hashes": tensor_hashes(state)})
        self.emit("checkpoint", {"path": path, "saved": saved})
