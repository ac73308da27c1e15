"""The enforcement matrix: every mode x regime x violation chosen on the command line, one
case each, each run's outcome checked against the design's table (``nora.expected_outcome``).
"""
from __future__ import annotations

import pytest

import nora


@pytest.mark.nora(trainer="supervised")
def test_enforcement_matrix(seeded_trainer, mode, regime, violation):
    for result in seeded_trainer.fit_all():
        expected = nora.expected_outcome(mode, regime, violation,
                                         tolerance=result.config.regime.violation_tolerance)
        assert result.expected_outcome == expected
        actions = [d["agent_action"] for d in result.decisions]
        assert result.outcome == expected, (
            f"{mode}/{regime}/{violation} seed {result.config.seed}: outcome "
            f"{result.outcome}, expected {expected}; decisions {actions}; "
            f"run dir {result.run_dir}")
