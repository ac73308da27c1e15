"""Staged hyperparameter search with a reproducibility verdict (``python -m nora hpo``).

A thin sweeper over Optuna's own API (hydra-optuna-sweeper 1.3.0 pins ``optuna<3``): every
trial is a NORA run, the best trials are rerun, and only a config whose rerun has the same
fingerprint is crowned. Optuna is imported only when a search runs.
"""
from __future__ import annotations

import importlib
from typing import Any

from nora.hpo.order import STAGE_ORDER

_LAZY = {"HpoStage": "stages", "load_stage": "stages", "narrow": "stages",
         "stage_choices": "stages", "StageOutcome": "staged", "run_stage": "staged",
         "run_stages": "staged", "stage_text": "summary"}

__all__ = ["STAGE_ORDER", *_LAZY]


def __getattr__(name: str) -> Any:
    """Loaded on first use: every ``python -m nora`` command builds the ``hpo`` parser."""
    if name not in _LAZY:
        raise AttributeError(f"module 'nora.hpo' has no attribute {name!r}")
    return getattr(importlib.import_module(f"nora.hpo.{_LAZY[name]}"), name)
