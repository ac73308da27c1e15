"""Staged hyperparameter search with a reproducibility verdict (``python -m nora hpo``).

A thin sweeper over Optuna's own API (hydra-optuna-sweeper 1.3.0 pins ``optuna<3``): every
trial is a NORA run, the best trials are rerun, and only a config whose rerun has the same
fingerprint is crowned. Optuna is imported only when a search runs.
"""
from __future__ import annotations

from nora.hpo.stages import STAGE_ORDER, HpoStage, load_stage, narrow, stage_choices
from nora.hpo.staged import StageOutcome, run_stage, run_stages
from nora.hpo.summary import stage_text

__all__ = ["STAGE_ORDER", "HpoStage", "StageOutcome", "load_stage", "narrow", "run_stage",
           "run_stages", "stage_choices", "stage_text"]
