"""Determinism switched off: nondeterministic kernels, cuDNN autotuning, and on CPU a
parallel data path that hands out batches in the order workers finish them."""
from __future__ import annotations

from typing import Any

import torch

from nora.seeding import set_determinism
from nora.violations.base import BaseViolation, Fix


class NondeterminismEnabled(BaseViolation):
    name = "nondeterminism_enabled"
    severity = "high"
    scope = "startup"
    events = frozenset({"startup"})

    def inject(self, run) -> None:
        k = run.knobs
        k.deterministic, k.cudnn_benchmark = False, True
        k.loader_workers, k.loader_in_order = 2, False
        set_determinism(False, cudnn_benchmark=True)

    def detect(self, run, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        k = run.knobs
        found = {
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "loader_in_order": k.loader_in_order,
            "loader_workers": k.loader_workers,
        }
        ok = (found["deterministic_algorithms"] and not found["cudnn_benchmark"]
              and (k.loader_in_order or k.loader_workers == 0))
        return None if ok else found

    def fix(self, run) -> Fix:
        return Fix("restore_determinism", {"deterministic": True, "cudnn_benchmark": False,
                                           "loader_in_order": True, "loader_workers": 0})

    def apply(self, run, evidence: dict[str, Any]) -> None:
        k = run.knobs
        k.deterministic, k.cudnn_benchmark = True, False
        k.loader_workers, k.loader_in_order = 0, True
        set_determinism(True, cudnn_benchmark=False)
