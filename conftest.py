"""What is particular to this repository's experiments: small runs, so the whole
enforcement matrix fits in the default suite. Everything else comes from the NORA plugin."""
from __future__ import annotations

import pytest


@pytest.fixture
def nora_overrides(nora_overrides, nora_case) -> list[str]:
    """One epoch on a 256-image subset of digits (about 0.2 s a run); PPO keeps its own.
    The ini's ``nora_overrides`` (e.g. ``-o nora_overrides="train.epochs=3"``) come after,
    so they win."""
    small = ["train.epochs=1"]
    if nora_case.trainer == "supervised":
        small.append("trainer.train_subset=256")
    return [*small, *nora_overrides]
