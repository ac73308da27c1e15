"""The seed document's enforcement scripts (``scripts/test_agent_enforcement.sh`` and its SLURM
twin) as experiments: each asserts the decision the agent took *and* what it did to the run."""
from __future__ import annotations

import json

import pytest

import nora


def _manifest(result) -> dict:
    return json.loads((result.run_dir / "manifest.json").read_text())


@pytest.mark.nora(mode="norm_aware", regime="balanced", violation="nondeterminism_enabled")
def test_balanced_nondeterminism_auto_fixes(seeded_trainer, nora_record):
    result = seeded_trainer.fit()
    assert result.outcome == "fixed"
    (fix,) = [d for d in result.decisions if d["agent_action"] == "auto_fix"]
    assert fix["violation_name"] == "nondeterminism_enabled" and fix["validated"]
    assert fix["suggested_fix"]["action"] == "restore_determinism"
    determinism = _manifest(result)["determinism"]
    assert determinism["deterministic_algorithms"] and not determinism["cudnn_benchmark"]
    assert determinism["loader_workers"] == 0
    clean = seeded_trainer.fit(overrides=["violation=none"])
    nora_record.verdict("fix_equals_clean_run", result.fingerprint == clean.fingerprint,
                        f"{result.fingerprint} vs {clean.fingerprint}")
    assert result.fingerprint == clean.fingerprint, "the fix did not restore the seeded run"


@pytest.mark.nora(mode="norm_aware", regime="strict", violation="missing_seed")
def test_strict_missing_seed_halts(seeded_trainer):
    with pytest.raises(nora.NormViolationError) as info:
        seeded_trainer.fit()
    err, result = info.value, info.value.result
    assert err.violation == "missing_seed"
    assert "missing_seed" in str(err) and "set_seed" in str(err), "the error must name the fix"
    assert err.suggested_fix["action"] == "set_seed"
    assert result.status == "halted" and result.outcome == "halted"
    assert [d["agent_action"] for d in result.decisions] == ["halt"]
    assert result.decisions[0]["event"] == "startup"
    assert result.losses == [] and result.fingerprint is None, "no step may run after a halt"


@pytest.mark.nora(regime="balanced", violation="untracked_config_change")
@pytest.mark.parametrize("mode", ["agentic", "norm_aware"])
def test_config_tracking_auto_fixes(seeded_trainer, mode):
    """Script 3 (agentic) and its SLURM twin (balanced + config tracking, norm_aware)."""
    result = seeded_trainer.fit()
    assert result.outcome == "fixed"
    (fix,) = [d for d in result.decisions if d["agent_action"] == "auto_fix"]
    assert fix["suggested_fix"]["action"] == "record_config_change"
    recorded = [c for c in _manifest(result)["config_changes"] if c["key"] == "train.lr"]
    assert recorded, "the mid-run learning-rate change must be in the manifest"
    lr = result.config.train.lr
    assert recorded[0]["old"] == lr and recorded[0]["new"] == pytest.approx(
        lr * result.config.violation.lr_factor)


@pytest.mark.nora(mode="norm_aware", regime="strict", violation="none")
def test_strict_clean_succeeds(seeded_trainer):
    result = seeded_trainer.fit()
    assert result.status == "done" and result.outcome == "clean"
    assert not [d for d in result.decisions if d["agent_action"] != "adjust"]
    assert result.fingerprint and result.false_positives == 0
