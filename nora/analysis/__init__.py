"""Reproducibility analysis: where two runs part ways, process-isolated reruns, seed statistics.

``compare`` and ``check_reproducible`` are imported eagerly (their names shadow the
submodules of the same name); statistics load on first use so ``import nora`` does not
pay for scipy.
"""
from __future__ import annotations

import importlib
from typing import Any

from nora.analysis.compare import MISSING, Comparison, assert_identical, compare
from nora.analysis.environment import EnvironmentReport, check_environment
from nora.analysis.isolation import ReplicaError, check_reproducible, warm_up

__all__ = ["MISSING", "Comparison", "EnvironmentReport", "ReplicaError", "SeedStats",
           "assert_identical", "check_ddp", "check_environment", "check_resume", "check_reproducible", "compare",
           "interquartile_mean", "seed_stats", "warm_up"]

_LAZY = {"SeedStats": "stats", "interquartile_mean": "stats", "seed_stats": "stats",
         "check_ddp": "ddp_check", "check_resume": "resume"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nora.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nora.analysis.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
