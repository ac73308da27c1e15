"""Evidence every integration reads from the live run: switches, gradients, modes, LRs."""
from __future__ import annotations

import math
import os
from typing import Any

import torch

__all__ = ["STOCHASTIC", "determinism", "determinism_problems", "fix_determinism", "lrs",
           "nonfinite_grads", "stochastic_in_train"]

STOCHASTIC = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm)


def determinism() -> dict[str, Any]:
    """torch's switches as they are now (what the run really uses)."""
    return {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "torch_threads": torch.get_num_threads()}


def determinism_problems(ev: dict[str, Any], *, cuda: bool = False) -> list[str]:
    problems = []
    if not ev["deterministic_algorithms"]:
        problems.append("deterministic algorithms are off (torch.use_deterministic_algorithms)")
    if ev["cudnn_benchmark"]:
        problems.append("cudnn.benchmark is on (kernels picked by timing)")
    if cuda and not ev["cublas_workspace_config"]:
        problems.append("CUBLAS_WORKSPACE_CONFIG is not set under CUDA")
    return problems


def fix_determinism() -> bool:
    """Turn the switches on; validated by reading them back."""
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return not determinism_problems(determinism())


def nonfinite_grads(module: torch.nn.Module) -> list[str]:
    """Names of parameters whose gradient holds inf or NaN.

    One fused max-norm over all gradients decides (a few ops per step, not one per
    parameter; the max norm cannot overflow on finite values); names only when it fails.
    """
    named = [(n, p.grad) for n, p in module.named_parameters() if p.grad is not None]
    if not named:
        return []
    total = torch.nn.utils.get_total_norm([g for _, g in named], norm_type=math.inf)
    if bool(torch.isfinite(total)):
        return []
    return [n for n, g in named if not bool(torch.isfinite(g).all())]


def stochastic_in_train(module: torch.nn.Module) -> list[str]:
    """Dropout / batch-norm submodules in training mode (they draw or drift in evaluation)."""
    return [n or type(m).__name__ for n, m in module.named_modules()
            if isinstance(m, STOCHASTIC) and m.training]


def lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [float(g["lr"]) for g in optimizer.param_groups]


def finite(x: Any) -> bool:
    return math.isfinite(float(x))
