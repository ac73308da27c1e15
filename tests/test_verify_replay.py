"""``nora verify`` replaying segments: nondeterminism is caught at its first disputed step;
unseeded runs verify; tracked changes, PPO, long runs and 20 seeds verify (slow)."""
from __future__ import annotations

from pathlib import Path

import pytest

import nora
from nora.analysis.verify import verify
from nora.records import read_json
from nora.trainers.data import BatchIndexDataset
from tests.conftest import slow_loader_worker

AUDITED = ["train.epochs=2", "trainer.train_subset=384", "train.checkpoint_every=3"]  # 12 steps


def train(path: Path, *overrides: str) -> Path:
    nora.train(nora.load_config([*AUDITED, *overrides]), run_dir=path)
    return path


def test_nondeterminism_fails_naming_the_first_disputed_step(tmp_path):
    # the recorded run's loader race is decided (worker 0 slow: worker 1's batches first);
    # a replay in a fresh process runs the race as the OS lets it
    with slow_loader_worker(BatchIndexDataset, 0):
        run = train(tmp_path / "nondet", "modes=pipeline", "violation=nondeterminism_enabled")
    v = verify(run, budget=0.5, workers=1)
    assert v.verdict == "failed", v.report()
    assert all(c["passed"] for c in v.checks)               # the records are intact
    bad = [s for s in v.segments if s["status"] == "diverged"]
    assert bad and v.first_divergent_step == min(s["first_divergent_step"] for s in bad)
    seg = next(s for s in bad if s["first_divergent_step"] == v.first_divergent_step)
    assert seg["start"] <= v.first_divergent_step < seg["end"]
    assert f"step {v.first_divergent_step} does not reproduce" in v.report()
    assert v.divergent_tensors and all(t.startswith(("features.", "head."))
                                       for t in v.divergent_tensors)


@pytest.mark.slow
def test_a_tracked_mid_run_change_is_replayed_and_verifies(tmp_path):
    # the same hand edit of the LR, recorded by the norm-aware agent this time
    run = train(tmp_path / "tracked", "violation=untracked_config_change")
    manifest = read_json(run / "manifest.json")
    assert [c["key"] for c in manifest["config_changes"]] == ["train.lr"]
    v = verify(run, budget=1.0, workers=2)
    assert v.verdict == "verified", v.report()
    assert v.audited_steps == 12


@pytest.mark.slow
def test_ppo_run_verifies(tmp_path):
    run = tmp_path / "ppo"
    nora.train(nora.load_config(["trainer=ppo", "train.epochs=6", "trainer.num_steps=32",
                                 "trainer.eval_episodes=2", "train.eval_every=2",
                                 "train.checkpoint_every=2"]), run_dir=run)
    v = verify(run, budget=1.0, workers=2)
    assert v.verdict == "verified", v.report()
    assert (v.audited_steps, len(v.segments)) == (6, 3)


def test_unseeded_run_with_recorded_entropy_verifies(tmp_path):
    run = train(tmp_path / "unseeded", "seed=null", "modes=pipeline")
    assert read_json(run / "manifest.json")["seeds"]["entropy_seed"] is not None
    v = verify(run, budget=1.0, workers=2)
    assert v.verdict == "verified", v.report()


LONG = ["trainer.train_subset=640", "train.batch_size=32", "train.epochs=10",
        "train.checkpoint_every=10"]                          # 200 steps, 20 segments


@pytest.mark.slow
def test_200_step_run_verifies_within_5_percent_and_in_full(tmp_path):
    run = tmp_path / "long"
    nora.train(nora.load_config(LONG), run_dir=run)
    small = verify(run, budget=0.05, workers=2)
    assert small.verdict == "verified", small.report()
    assert small.total_steps == 200 and 0 < small.audited_steps <= 10
    full = verify(run, budget=1.0, workers=2)
    assert full.verdict == "verified", full.report()
    assert (full.audited_steps, len(full.segments)) == (200, 20)


@pytest.mark.slow
def test_twenty_clean_seeds_all_verify(tmp_path):
    verdicts = {}
    for seed in range(20):
        run = train(tmp_path / f"s{seed}", f"seed={seed}")
        verdicts[seed] = verify(run, budget=0.5, workers=2, seed=seed).verdict
    assert set(verdicts.values()) == {"verified"}, verdicts
