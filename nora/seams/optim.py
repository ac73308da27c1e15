"""The optimizer as the run sees it: the LR every param group actually uses, against the LR
the recorded config, schedule and tracked changes say it should use."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch


class OptimizerSeam:
    def __init__(self) -> None:
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule: Callable[[int], float] = lambda t: 1.0
        self.position: Callable[[], int] = lambda: 0
        self.set_base: Callable[[float], None] | None = None
        self.get_base: Callable[[], float] | None = None

    def track(self, optimizer: torch.optim.Optimizer, *, schedule: Callable[[int], float],
              position: Callable[[], int], get_base: Callable[[], float],
              set_base: Callable[[float], None]) -> None:
        """``schedule(t)`` multiplies the base LR at schedule position ``position()``."""
        self.optimizer, self.schedule, self.position = optimizer, schedule, position
        self.get_base, self.set_base = get_base, set_base

    @property
    def base_lr(self) -> float:
        return self.get_base() if self.get_base else float("nan")

    def lrs(self) -> list[float]:
        if self.optimizer is None:
            return []
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def mismatches(self, recorded_base: float) -> list[dict[str, Any]]:
        """Param groups whose LR is not ``recorded_base x schedule(position)``."""
        expected = recorded_base * self.schedule(self.position())
        return [{"param_group": i, "lr": lr, "expected": expected}
                for i, lr in enumerate(self.lrs())
                if not math.isclose(lr, expected, rel_tol=1e-9, abs_tol=1e-15)]
