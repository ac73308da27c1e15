"""PPO under NORA: reproducibility, the RL-applicable violations' effects and fixes, and
the enforcement matrix with trainer=ppo."""
from __future__ import annotations

import itertools
import math

import pytest

import nora
from nora.config import group_choices
from nora.replaying import replay
from nora.trainers.ppo import MinibatchChunks
from tests.conftest import slow_loader_worker

PPO = ("trainer=ppo", "train.epochs=2", "trainer.num_steps=32", "trainer.eval_episodes=2",
       "train.eval_every=1")
PIPE = ("modes=pipeline",)
FIXED = ("modes=norm_aware", "regime=balanced")
RL_VIOLATIONS = [v for v in nora.VIOLATIONS if v != "eval_mode_bug"]


@pytest.fixture
def ppo(run_case):
    return lambda *o: run_case(*PPO, *o, small=False)


def test_same_seed_bit_identical_different_seed_differs(ppo):
    a, b, c = ppo("seed=1"), ppo("seed=1"), ppo("seed=2")
    assert a.outcome == "clean" and a.fingerprint == b.fingerprint and a.losses == b.losses
    assert a.metrics["greedy_return"] == b.metrics["greedy_return"]
    assert c.fingerprint != a.fingerprint


def test_eval_mode_bug_does_not_apply_to_ppo():
    with pytest.raises(nora.ConfigError, match="does not apply to trainer='ppo'"):
        nora.load_config(["trainer=ppo", "violation=eval_mode_bug"])


def test_missing_seed(ppo):
    assert ppo(*PIPE, "violation=missing_seed").fingerprint != \
        ppo(*PIPE, "violation=missing_seed").fingerprint
    assert ppo(*FIXED, "violation=missing_seed").fingerprint == ppo(*PIPE).fingerprint


def test_nondeterminism_reorders_minibatches(ppo):
    """Whichever loader worker is slower decides the minibatch order; fixed, it does not."""
    many = ("train.batch_size=32", "trainer.update_epochs=2")
    bad, fixed = {}, {}
    for slow in (0, 1):
        with slow_loader_worker(MinibatchChunks, slow):
            bad[slow] = ppo(*PIPE, "violation=nondeterminism_enabled", *many).fingerprint
            fixed[slow] = ppo(*FIXED, "violation=nondeterminism_enabled", *many).fingerprint
    assert bad[0] != bad[1]
    assert fixed[0] == fixed[1] == ppo(*PIPE, *many).fingerprint


def test_untracked_change(ppo):
    bad = ppo(*PIPE, "violation=untracked_config_change")
    assert not replay(bad.run_dir).reproducible
    good = ppo(*FIXED, "violation=untracked_config_change")
    assert good.fingerprint == bad.fingerprint and replay(good.run_dir).reproducible


def test_amp_nan(ppo):
    assert any(math.isnan(x) for x in ppo(*PIPE, "violation=amp_nan").losses)
    good = ppo(*FIXED, "violation=amp_nan")
    assert good.outcome == "fixed" and all(math.isfinite(x) for x in good.losses)


def test_observation_noise_left_on_at_eval(ppo):
    assert ppo(*PIPE, "violation=aug_leak").metrics["eval_repeatable"] is False
    assert ppo(*FIXED, "violation=aug_leak").metrics["eval_repeatable"] is True
    assert ppo(*PIPE).metrics["eval_repeatable"] is True


def _resume_equal(ppo, *o: str) -> bool:
    full = ppo(*o, "train.epochs=3")
    part = ppo(*o, "train.epochs=3", "train.max_steps=1")
    resumed = ppo(*o, "train.epochs=3",
                  f"resume_from={part.run_dir / 'checkpoints' / 'last.pt'}")
    return resumed.fingerprint == full.fingerprint


def test_checkpoint_incomplete_and_resume_equivalence(ppo):
    assert _resume_equal(ppo, *PIPE)
    assert not _resume_equal(ppo, *PIPE, "violation=checkpoint_incomplete")
    assert _resume_equal(ppo, *FIXED, "violation=checkpoint_incomplete")


CASES = list(itertools.product(group_choices("modes"), group_choices("regime"), RL_VIOLATIONS))


@pytest.mark.parametrize("mode, regime, violation", CASES, ids=["-".join(c) for c in CASES])
def test_ppo_matrix_outcomes(ppo, mode, regime, violation):
    result = ppo(f"modes={mode}", f"regime={regime}", f"violation={violation}")
    assert result.outcome == nora.expected_outcome(mode, regime, violation)
    assert result.false_positives == 0
