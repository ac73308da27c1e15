"""``RunContext``: what a trainer gets from NORA, and the only way it touches the run.

Every seam a violation can act on goes through here (generators, the data loader factory,
the precision policy, the evaluation context and transform, checkpoints), and every record
the monitor reads (steps, evaluations, checkpoints). A trainer written on the context gets
violations, the agent, records, replay and resume without violation-specific code.
"""
from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from nora.hashing import fingerprint
from nora.seams import (CheckpointSeam, EvaluationSeam, Generators, LoaderSeam, OptimizerSeam,
                        Precision)
from nora.seams.rng import capture_rng, restore_rng
from nora.seeding import set_determinism


def float_bits(x: float) -> str:
    """The float32 bit pattern of a loss, so equal-looking losses can be told apart."""
    return struct.pack(">f", x).hex()


class Observer(Protocol):
    """The monitor behind a context (``nora.run.Run``); a context alone records nothing."""

    def emit(self, event: str, info: dict[str, Any]) -> None: ...
    def begin_step(self, step: int, epoch: int) -> None: ...
    def end_step(self, record: dict[str, Any], model: nn.Module) -> None: ...
    def on_eval(self, metrics: dict[str, Any]) -> None: ...
    def on_checkpoint(self, path: Path, sha256: str) -> None: ...
    def agent_state(self) -> dict[str, Any]: ...
    def load_agent_state(self, state: dict[str, Any]) -> None: ...
    def record_change(self, key: str, old: Any, new: Any, *, source: str,
                      force: bool = False) -> None: ...


class _Silent:
    def emit(self, event: str, info: dict[str, Any]) -> None: ...
    def begin_step(self, step: int, epoch: int) -> None: ...
    def end_step(self, record: dict[str, Any], model: nn.Module) -> None: ...
    def on_eval(self, metrics: dict[str, Any]) -> None: ...
    def on_checkpoint(self, path: Path, sha256: str) -> None: ...
    def agent_state(self) -> dict[str, Any]: return {}
    def load_agent_state(self, state: dict[str, Any]) -> None: ...
    def record_change(self, key: str, old: Any, new: Any, *, source: str,
                      force: bool = False) -> None: ...


class RunContext:
    def __init__(self, config: Any, run_dir: Path, device: torch.device, *, seed: int,
                 seed_source: str = "config", progress: bool = False,
                 observer: Observer | None = None) -> None:
        self.config, self.run_dir, self.device, self.progress = config, run_dir, device, progress
        self.trainer_config = config.trainer
        self.generators = Generators(seed, seed_source)
        self.loader = LoaderSeam()
        self.precision = Precision(device.type, config.train.amp)
        self.evaluation = EvaluationSeam()
        self.evaluation.training_augment = lambda: (self.augment, self.augment_generator)
        self.checkpoints = CheckpointSeam()
        self.optim = OptimizerSeam()
        self.deterministic = config.repro.deterministic
        self.cudnn_benchmark = config.repro.cudnn_benchmark
        self.observer: Observer = observer or _Silent()
        # the trainer's training augmentation and its stream, named so aug_leak can misuse them
        self.augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
        self.augment_generator: torch.Generator | None = None
        self.step = self.epoch = self.total_steps = 0
        self.last_batch_hash: str | None = None
        self.rng_hash: str | None = None
        self.recorded: dict[str, Any] = {"train.lr": config.train.lr}  # as the records say

    # --- generators ----------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self.generators.seed

    def generator(self, *names: object, device: str = "cpu", per_epoch: bool = False
                  ) -> torch.Generator:
        """A generator seeded from the run seed for one named stream (see ``Generators``)."""
        return self.generators.get(*names, device=device, per_epoch=per_epoch)

    def apply_determinism(self) -> None:
        set_determinism(self.deterministic, cudnn_benchmark=self.cudnn_benchmark)

    # --- data ----------------------------------------------------------------------
    def dataloader(self, dataset: Any, *, sampler: Any = None,
                   generator: torch.Generator | None = None) -> Any:
        return self.loader(dataset, sampler=sampler, generator=generator)

    # --- precision and the optimizer step -------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager[None]:
        return self.precision.autocast()

    def backward(self, loss: torch.Tensor, model: nn.Module) -> float:
        return self.precision.backward(loss, model.named_parameters())

    def after_backward(self) -> None:
        """Where the monitor looks at a step: loss and gradients known, weights untouched."""
        p = self.precision
        self.observer.emit("step", {"finite": p.finite, "loss": p.last_loss,
                                    "nonfinite_grads": list(p.nonfinite)})

    def optimizer_step(self, optimizer: torch.optim.Optimizer,
                       clip: tuple[list, float] | None = None) -> bool:
        return self.precision.step(optimizer, clip)

    def track_optimizer(self, optimizer: torch.optim.Optimizer, **kwargs: Any) -> None:
        """Let the monitor compare the LR each param group uses with the recorded one."""
        self.optim.track(optimizer, **kwargs)

    # --- evaluation ----------------------------------------------------------------
    @contextlib.contextmanager
    def evaluating(self, model: nn.Module) -> Iterator[dict[str, Any]]:
        with self.evaluation.evaluating(model) as seen:
            yield seen

    def eval_input(self, x: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """The eval pipeline on ``x``; first the monitor looks at the model as it will run."""
        self.evaluation.note(model, x)
        self.observer.emit("eval", dict(self.evaluation.last))
        return self.evaluation.apply(x)

    def record_eval(self, metrics: dict[str, Any]) -> None:
        self.observer.on_eval(metrics)

    # --- steps ---------------------------------------------------------------------
    def begin_step(self, step: int, epoch: int, batch: Any = None) -> None:
        self.step, self.epoch = step, epoch
        self.last_batch_hash = fingerprint(batch) if batch is not None else None
        self.rng_hash = self.generators.state_hash()
        self.observer.begin_step(step, epoch)

    def end_step(self, loss: float, model: nn.Module, **extra: Any) -> None:
        rec = {"kind": "step", "step": self.step, "epoch": self.epoch, "loss": loss,
               "loss_bits": float_bits(loss), "lr": (self.optim.lrs() or [None])[0],
               "lrs": self.optim.lrs(), "batch_hash": self.last_batch_hash,
               "rng_hash": self.rng_hash, **extra}
        self.observer.end_step(rec, model)

    def record_change(self, key: str, old: Any, new: Any, *, source: str,
                      force: bool = False) -> None:
        """Record a mid-run change of a config value, so a replay re-applies it."""
        self.observer.record_change(key, old, new, source=source, force=force)

    # --- checkpoints ---------------------------------------------------------------
    def rng_state(self) -> dict[str, Any]:
        """Every RNG state the run draws from (globals and the tracked generators)."""
        return capture_rng(self.generators.states())

    def restore_rng(self, state: dict[str, Any]) -> None:
        restore_rng(state)
        self.generators.load_states(state.get("generators", {}))

    def save_checkpoint(self, state: dict[str, Any], name: str = "last.pt") -> Path:
        """Write a checkpoint (``state`` plus the agent's memory); the monitor audits the file."""
        path = self.run_dir / "checkpoints" / name
        full = {**state, "agent": self.observer.agent_state()}
        sha = self.checkpoints.save(full, path)
        self.observer.on_checkpoint(path, sha)
        return path

    def load_checkpoint(self, path: str | Path) -> dict[str, Any]:
        state = self.checkpoints.load(path, map_location=self.device)
        if "agent" in state:
            self.observer.load_agent_state(state["agent"])
        return state

    # --- settings (what a violation changed; replayed from the manifest) -------------
    def settings(self) -> dict[str, Any]:
        p, e = self.precision, self.evaluation
        return {"seed": self.seed, "seed_source": self.generators.source,
                "deterministic": self.deterministic, "cudnn_benchmark": self.cudnn_benchmark,
                "loader.workers": self.loader.workers, "loader.in_order": self.loader.in_order,
                "precision.amp": p.amp, "precision.scaler": p.scaler is not None,
                "precision.static_loss_scale": p.static_loss_scale,
                "evaluation.eval_mode": e.set_eval_mode,
                "evaluation.transform": "augment" if e.leak_training_augment else None,
                "checkpoint.drop": list(self.checkpoints.drop)}

    def apply_settings(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.apply_setting(key, value)

    def apply_setting(self, key: str, value: Any) -> None:
        p = self.precision
        if key == "seed":
            self.generators.reseed(int(value), self.generators.source)
        elif key == "seed_source":
            self.generators.reseed(self.seed, str(value))
        elif key in ("deterministic", "cudnn_benchmark"):
            setattr(self, key, bool(value))
            self.apply_determinism()
        elif key == "loader.workers":
            self.loader.workers = int(value)
        elif key == "loader.in_order":
            self.loader.in_order = bool(value)
        elif key == "precision.scaler":
            if value and p.scaler is None:
                p.enable_scaler()
        elif key == "precision.static_loss_scale":
            if value:
                p.drop_scaler(float(value))
        elif key == "precision.amp":
            p.amp = bool(value)
        elif key == "evaluation.eval_mode":
            if value:
                self.evaluation.force_eval_mode()
            else:
                self.evaluation.set_eval_mode = False
        elif key == "evaluation.transform":
            self.evaluation.leak_training_augment = bool(value)
        elif key == "checkpoint.drop":
            self.checkpoints.drop = tuple(value)
