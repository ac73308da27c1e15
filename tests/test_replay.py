from __future__ import annotations

import pytest

from nora.errors import RecordError
from nora.records import read_json
from nora.replaying import replay

# a setting where the agent's plateau rule lowers the LR within five short epochs
PLATEAU = ("train.lr_schedule=constant", "train.lr=0.05", "train.epochs=5",
           "mode.plateau_patience=1")


def test_norm_aware_agent_lr_change_is_tracked_and_replays(run_case):
    result = run_case("modes=norm_aware", *PLATEAU)
    actions = [d["agent_action"] for d in result.decisions]
    assert actions and set(actions) == {"adjust"}
    assert result.outcome == "clean"  # adjustments are not violations
    assert [c.key for c in result.changes] == ["train.lr"] * len(actions)
    verdict = replay(result.run_dir)
    assert verdict.reproducible, verdict.message
    metrics = read_json(result.run_dir / "norms" / "reproducibility_metrics.json")
    assert metrics["verdicts"]["replay"]["passed"] is True


def test_agentic_agent_lr_change_is_not_tracked_so_replay_fails(run_case):
    result = run_case("modes=agentic", *PLATEAU)
    assert {d["agent_action"] for d in result.decisions} == {"adjust"}
    assert result.changes == []
    verdict = replay(result.run_dir)
    assert not verdict.reproducible and verdict.first_divergent_step is not None


@pytest.mark.parametrize("violation", ["amp_nan", "eval_mode_bug", "checkpoint_incomplete",
                                       "missing_seed", "nondeterminism_enabled"])
def test_fixed_norm_aware_runs_replay(run_case, violation):
    result = run_case("modes=norm_aware", "regime=balanced", f"violation={violation}")
    assert result.outcome == "fixed"
    assert replay(result.run_dir).reproducible


def test_replay_of_missing_directory_is_a_record_error(tmp_path):
    with pytest.raises(RecordError, match="nope' does not exist.*manifest.json"):
        replay(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordError, match="no manifest.json"):
        replay(tmp_path / "empty")


def test_resumed_norm_aware_run_keeps_the_agents_memory(run_case):
    full = run_case("modes=norm_aware", *PLATEAU)
    assert full.changes, "the setting should make the agent lower the LR"
    part = run_case("modes=norm_aware", *PLATEAU, "train.max_steps=10")
    resumed = run_case("modes=norm_aware", *PLATEAU,
                       f"resume_from={part.run_dir / 'checkpoints' / 'last.pt'}")
    assert resumed.false_positives == 0 and resumed.outcome == "clean"
    assert resumed.fingerprint == full.fingerprint
