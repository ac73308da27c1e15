"""check_reproducible on a trainer nobody here wrote: stable-baselines3's PPO on CartPole-v1.

Same seed, each run in a fresh interpreter with its own PYTHONHASHSEED: bit-identical
parameters and optimizer state. No seed: the runs differ (CartPole's start states come from
OS entropy), and the verdict names the tensors. CPU, and a tiny budget, so it stays fast.
Needs the ``bench`` extra (``pip install stable-baselines3``); skipped without it.
"""
from __future__ import annotations

from typing import Any

import pytest

from nora.analysis import check_reproducible

pytest.importorskip("stable_baselines3")

N_STEPS, TOTAL_TIMESTEPS = 64, 256     # four rollouts of 64 steps, two epochs each


# Module level, so each replica (a fresh interpreter) can import it.
def train_sb3_ppo(seed: int | None) -> dict[str, Any]:
    """Train SB3's PPO on CartPole-v1 for a few rollouts; its final policy and optimizer."""
    from stable_baselines3 import PPO
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=N_STEPS, batch_size=N_STEPS, n_epochs=2,
                policy_kwargs={"net_arch": [16]}, seed=seed, device="cpu", verbose=0)
    model.learn(total_timesteps=TOTAL_TIMESTEPS)
    return {"policy": model.policy.state_dict(),
            "optimizer": model.policy.optimizer.state_dict()}


def test_sb3_ppo_same_seed_gives_identical_parameters(nora_record) -> None:
    verdict = check_reproducible(train_sb3_ppo, seed=0, isolation="process")
    nora_record.verdict("sb3_ppo_same_seed_identical", verdict.identical,
                        "" if verdict.identical else verdict.cause)
    assert verdict.identical, verdict.report()


def test_sb3_ppo_without_a_seed_differs(nora_record) -> None:
    verdict = check_reproducible(train_sb3_ppo, seed=None, isolation="process")
    nora_record.verdict("sb3_ppo_unseeded_differs", not verdict.identical, verdict.cause)
    assert not verdict.identical, "two unseeded PPO runs must not repeat each other"
    assert any(name.startswith("policy.") for name in verdict.divergent_tensors)
    assert verdict.report().splitlines()[-1].startswith("Hint:")
