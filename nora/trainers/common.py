"""What the built-in trainers share: the LR schedule, base-LR changes, flat state."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from nora.hashing import fingerprint


def lr_factor(schedule: str, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base LR at a step; decays over the full (uninterrupted) run."""
    total = max(1, total_steps)
    if schedule == "cosine":
        return lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))
    if schedule == "linear":
        return lambda t: max(0.0, 1.0 - min(t, total) / total)
    return lambda t: 1.0


class ScheduledLR:
    """An optimizer's LR as base LR times a schedule factor; the base LR can be changed
    mid-run (by an agent or by hand) and survives checkpoints via the scheduler state."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: str, total_steps: int):
        self.optimizer = optimizer
        self.factor = lr_factor(schedule, total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.factor)

    @property
    def base_lr(self) -> float:
        return float(self.scheduler.base_lrs[0])

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_base_lr(self, lr: float) -> None:
        self.scheduler.base_lrs = [lr for _ in self.scheduler.base_lrs]
        for group in self.optimizer.param_groups:
            group["initial_lr"] = lr
            group["lr"] = lr * self.factor(self.scheduler.last_epoch)

    def step(self) -> None:
        self.scheduler.step()


def flat_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Weights, buffers and optimizer tensors under one flat namespace, for hashing/compare."""
    out = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    for idx, st in optimizer.state_dict()["state"].items():
        for k, v in st.items():
            out[f"optimizer.state.{idx}.{k}"] = (v.detach().cpu() if torch.is_tensor(v)
                                                 else torch.tensor(v))
    return out


def config_hash(config: Any) -> str:
    """What a checkpoint must agree with to be resumed: the values that decide training."""
    d = config.model_dump(mode="json")
    train = {k: v for k, v in d["train"].items() if k not in ("max_steps", "checkpoint_every")}
    return fingerprint({"seed": d["seed"], "trainer": d["trainer"], "train": train,
                        "repro": d["repro"]})
