"""Helpers shared by the core tests: small, fast configs and a halt-tolerant runner."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import nora

SMALL = ["train.epochs=1", "trainer.train_subset=256"]


@pytest.fixture
def run_case(tmp_path: Path):
    """``run_case(*overrides)`` trains in a fresh directory and returns the RunResult,
    also when the agent halted the run."""
    counter = itertools.count()

    def _run(*overrides: str, small: bool = True, **kwargs) -> nora.RunResult:
        config = nora.load_config([*(SMALL if small else []), *overrides])
        try:
            return nora.train(config, run_dir=tmp_path / f"run{next(counter)}", **kwargs)
        except nora.NormViolationError as exc:
            return exc.result

    return _run
