"""``nora compare`` says why two runs part ways, from each step's batch hash, RNG-state hash
and learning rates: a different batch, different random draws, a different LR, or the same
inputs giving different results."""
from __future__ import annotations

import pytest

import nora
from nora.trainers.data import BatchIndexDataset
from tests.conftest import slow_loader_worker

PIPE = ("modes=pipeline",)


def test_an_unordered_loader_is_blamed_on_the_data(run_case):
    runs = []
    for slow in (0, 1):
        with slow_loader_worker(BatchIndexDataset, slow):
            runs.append(run_case(*PIPE, "violation=nondeterminism_enabled"))
    c = nora.compare(runs[0].run_dir, runs[1].run_dir)
    assert not c.identical and "different batch" in c.cause
    assert "DataLoader" in c.hint


def test_a_resume_without_rng_state_is_blamed_on_randomness(run_case):
    over = (*PIPE, "violation=checkpoint_incomplete", "train.epochs=2")
    full = run_case(*over)
    part = run_case(*over, "train.max_steps=5")
    resumed = run_case(*over, f"resume_from={part.run_dir / 'checkpoints' / 'last.pt'}")
    c = nora.compare(full.run_dir, resumed.run_dir)
    assert c.first_divergent_step == 5 and "different RNG states" in c.cause


def test_an_untracked_lr_edit_is_blamed_on_hyperparameters(run_case):
    bad = run_case(*PIPE, "violation=untracked_config_change")
    clean = run_case(*PIPE)
    c = nora.compare(clean.run_dir, bad.run_dir)
    assert "different learning rate" in c.cause and "param group(s) [0]" in c.cause


def test_same_inputs_different_results_is_blamed_on_kernels(run_case):
    a = run_case(*PIPE, "repro.torch_threads=1", "trainer.channels=64", "trainer.hidden=256")
    b = run_case(*PIPE, "repro.torch_threads=2", "trainer.channels=64", "trainer.hidden=256")
    c = nora.compare(a.run_dir, b.run_dir)
    if c.identical:
        pytest.skip("this machine's kernels gave the same bits at 1 and 2 threads")
    assert "same batch, RNG states and learning rates" in c.cause
    assert "thread count (1 vs 2)" in c.cause
