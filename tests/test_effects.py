"""Each violation's real effect, measured in pipeline mode, and its fix measured in
norm_aware + balanced (the realism table of the design)."""
from __future__ import annotations

import math

from nora.replaying import replay
from nora.trainers.data import BatchIndexDataset
from tests.conftest import slow_loader_worker

PIPE = ("modes=pipeline",)
FIXED = ("modes=norm_aware", "regime=balanced")


def test_missing_seed_runs_differ_and_fix_makes_them_equal(run_case):
    a, b = (run_case(*PIPE, "violation=missing_seed") for _ in range(2))
    assert a.fingerprint != b.fingerprint
    c, d = (run_case(*FIXED, "violation=missing_seed") for _ in range(2))
    assert c.outcome == "fixed" and c.fingerprint == d.fingerprint
    assert c.fingerprint == run_case("violation=none").fingerprint


def test_nondeterminism_makes_the_run_depend_on_worker_timing(run_case):
    """Unordered parallel loading: whichever loader worker is slower decides the batch order
    and so the trained model; fixed, worker timing no longer matters. (Unforced reruns differ
    too, but only as often as the OS lets the race go either way: the slow experiment.)"""
    longer = ("train.epochs=2", "trainer.train_subset=512")
    runs = {}
    for slow in (0, 1):
        with slow_loader_worker(BatchIndexDataset, slow):
            runs[slow] = (run_case(*PIPE, "violation=nondeterminism_enabled", *longer),
                          run_case(*FIXED, "violation=nondeterminism_enabled", *longer))
    assert runs[0][0].fingerprint != runs[1][0].fingerprint
    assert runs[0][1].outcome == "fixed"
    assert runs[0][1].fingerprint == runs[1][1].fingerprint == run_case(*longer).fingerprint


def test_untracked_change_breaks_replay_and_fix_makes_it_replayable(run_case):
    bad = run_case(*PIPE, "violation=untracked_config_change")
    assert bad.fingerprint != run_case(*PIPE).fingerprint  # the edit changed training
    assert not replay(bad.run_dir).reproducible
    good = run_case(*FIXED, "violation=untracked_config_change")
    assert good.fingerprint == bad.fingerprint and [c.key for c in good.changes] == ["train.lr"]
    assert replay(good.run_dir).reproducible


def test_amp_nan_goes_non_finite_and_fix_keeps_training_finite(run_case):
    bad = run_case(*PIPE, "violation=amp_nan")
    assert not all(math.isfinite(x) for x in bad.losses)
    good = run_case(*FIXED, "violation=amp_nan")
    assert good.outcome == "fixed" and all(math.isfinite(x) for x in good.losses)
    assert math.isfinite(good.metrics["loss"])


def test_eval_mode_bug_makes_evals_differ_and_fix_makes_them_equal(run_case):
    bad = run_case(*PIPE, "violation=eval_mode_bug")
    assert bad.metrics["eval_repeatable"] is False
    clean = run_case(*PIPE)
    assert clean.metrics["eval_repeatable"] is True
    assert bad.fingerprint != clean.fingerprint  # batch-norm statistics drifted in eval
    good = run_case(*FIXED, "violation=eval_mode_bug")
    assert good.metrics["eval_repeatable"] is True and good.fingerprint == clean.fingerprint


def test_aug_leak_makes_eval_depend_on_rng_and_fix_removes_it(run_case):
    bad = run_case(*PIPE, "violation=aug_leak")
    assert bad.metrics["eval_repeatable"] is False
    good = run_case(*FIXED, "violation=aug_leak")
    assert good.metrics["eval_repeatable"] is True


def _resume_matches(run_case, *overrides: str) -> bool:
    full = run_case(*overrides, "train.epochs=2")
    part = run_case(*overrides, "train.epochs=2", "train.max_steps=5")
    ckpt = part.run_dir / "checkpoints" / "last.pt"
    resumed = run_case(*overrides, "train.epochs=2", f"resume_from={ckpt}")
    assert len(part.losses) == 5 and len(resumed.losses) == len(full.losses) - 5
    return resumed.fingerprint == full.fingerprint


def test_checkpoint_incomplete_resume_diverges_and_fix_restores_it(run_case):
    assert not _resume_matches(run_case, *PIPE, "violation=checkpoint_incomplete")
    assert _resume_matches(run_case, *FIXED, "violation=checkpoint_incomplete")
    assert _resume_matches(run_case, *PIPE)
