"""The outcome table and the agent's policy details. The 72 cases themselves run as one
parametrized experiment (experiments/test_matrix.py, through the plugin's fixtures); here
they run once through the library alone with ``-m slow``."""
from __future__ import annotations

import itertools

import pytest

import nora
from nora.agent.outcomes import OUTCOMES
from nora.config import group_choices

CASES = list(itertools.product(group_choices("modes"), group_choices("regime"),
                               list(nora.VIOLATIONS)))


def test_the_matrix_has_72_cases_and_the_table_follows_the_design():
    assert len(CASES) == 72
    table = {c: nora.expected_outcome(*c) for c in CASES}
    assert {table[(m, r, "none")] for m, r, _ in CASES} == {"clean"}
    assert {o for (m, _, v), o in table.items() if m == "pipeline" and v != "none"} == \
        {"undetected"}
    assert table[("agentic", "strict", "amp_nan")] == "halted"
    assert table[("agentic", "balanced", "missing_seed")] == "undetected"
    assert table[("norm_aware", "exploratory", "aug_leak")] == "logged"
    assert table[("norm_aware", "balanced", "eval_mode_bug")] == "fixed"


@pytest.mark.slow
@pytest.mark.parametrize("mode, regime, violation", CASES,
                         ids=["-".join(c) for c in CASES])
def test_outcome_matches_table(run_case, mode, regime, violation):
    result = run_case(f"modes={mode}", f"regime={regime}", f"violation={violation}")
    expected = nora.expected_outcome(mode, regime, violation)
    assert expected in OUTCOMES
    assert result.outcome == expected, [d["message"] for d in result.decisions]
    assert result.false_positives == 0
    if expected in ("halted", "fixed", "logged"):
        hit = [d for d in result.decisions if d["violation_name"] == violation]
        assert hit and hit[0]["evidence"] and hit[0]["suggested_fix"]["action"]
    if expected == "halted":
        assert result.status == "halted"


def test_strict_halt_names_violation_and_fix(tmp_path):
    config = nora.load_config(["regime=strict", "violation=missing_seed", "train.epochs=1"])
    with pytest.raises(nora.NormViolationError) as info:
        nora.train(config, run_dir=tmp_path)
    assert "missing_seed" in str(info.value) and "set_seed" in str(info.value)
    assert info.value.result.outcome == "halted"


def test_low_severity_within_tolerance_is_tolerated(monkeypatch, run_case):
    from nora.violations.aug_leak import AugLeak

    monkeypatch.setattr(AugLeak, "severity", "low")
    result = run_case("regime=balanced", "violation=aug_leak")
    assert result.outcome == "tolerated"
    assert nora.expected_outcome("norm_aware", "balanced", "aug_leak", severity="low",
                                 tolerance=1) == "tolerated"
    result = run_case("regime=balanced", "violation=aug_leak", "regime.violation_tolerance=0")
    assert result.outcome == "fixed"


def test_fix_failing_validation_halts_after_max_retries(monkeypatch, run_case):
    from nora.violations.eval_mode_bug import EvalModeBug

    calls = []
    monkeypatch.setattr(EvalModeBug, "validate", lambda self, run: calls.append(1) or False)
    result = run_case("regime=balanced", "violation=eval_mode_bug")
    assert result.outcome == "halted" and len(calls) == 3
    assert "failed validation 3 times" in result.decisions[-1]["message"]
