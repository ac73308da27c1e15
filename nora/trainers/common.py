"""What every trainer shares: the LR schedule, base-LR changes, RNG state capture."""
from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
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


def capture_rng(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every RNG state a run depends on, as checkpoint-safe data (tensors, ints, lists)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
        "generators": {k: g.get_state() for k, g in generators.items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    for k, g in generators.items():
        g.set_state(state["generators"][k])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
