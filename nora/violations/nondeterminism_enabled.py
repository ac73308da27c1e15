"""Determinism switched off: nondeterministic kernels, cuDNN autotuning, and on CPU a
parallel data path that hands out batches in the order workers finish them."""
from __future__ import annotations

import os
from typing import Any

import torch

from nora.context import RunContext
from nora.violations.base import BaseViolation, Fix


def switches(device_type: str) -> dict[str, Any]:
    """torch's determinism switches as they are now (and cuBLAS's workspace on CUDA)."""
    found: dict[str, Any] = {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark}
    if device_type == "cuda":
        found["CUBLAS_WORKSPACE_CONFIG"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    return found


class NondeterminismEnabled(BaseViolation):
    name = "nondeterminism_enabled"
    severity = "high"
    scope = "startup"
    events = frozenset({"startup", "step"})

    def inject(self, ctx: RunContext) -> None:
        ctx.deterministic, ctx.cudnn_benchmark = False, True
        ctx.loader.workers, ctx.loader.in_order = 2, False
        ctx.apply_determinism()

    def detect(self, ctx: RunContext, event: str, info: dict[str, Any]) -> dict[str, Any] | None:
        found = switches(ctx.device.type)
        if ctx.loader.last is not None:  # the real loader the trainer iterates
            loader = ctx.loader.evidence()
        else:  # before the first loader: what the factory will build
            loader = {"num_workers": ctx.loader.workers, "in_order": ctx.loader.in_order,
                      "ordered": ctx.loader.in_order or ctx.loader.workers == 0}
        bad = [k for k, v in {"deterministic_algorithms": not found["deterministic_algorithms"],
                              "cudnn_benchmark": found["cudnn_benchmark"],
                              "unordered_loader": not loader["ordered"],
                              "CUBLAS_WORKSPACE_CONFIG":
                                  "CUBLAS_WORKSPACE_CONFIG" in found
                                  and not found["CUBLAS_WORKSPACE_CONFIG"]}.items() if v]
        return {**found, "loader": loader, "nondeterministic": bad} if bad else None

    def fix(self, ctx: RunContext) -> Fix:
        return Fix("restore_determinism", {"deterministic": True, "cudnn_benchmark": False,
                                           "loader_in_order": True, "loader_workers": 0})

    def apply(self, ctx: RunContext, evidence: dict[str, Any]) -> None:
        ctx.deterministic, ctx.cudnn_benchmark = True, False
        ctx.loader.workers, ctx.loader.in_order = 0, True
        ctx.apply_determinism()

    def validate(self, ctx: RunContext) -> bool:
        found = switches(ctx.device.type)
        return (found["deterministic_algorithms"] and not found["cudnn_benchmark"]
                and ctx.loader.workers == 0)
