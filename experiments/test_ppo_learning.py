"""The PPO bar: CartPole-v1 with 8 envs reaches a mean episodic return (last 100 episodes)
of 195 within 100,000 env steps for seeds 0, 1 and 2, and greedy evaluation over 10
episodes then scores at least 400 for the median seed."""
from __future__ import annotations

import statistics

import pytest

import nora
from nora.records import read_jsonl


def steps_to_reach(run_dir, bar: float) -> int | None:
    for rec in read_jsonl(run_dir / "metrics.jsonl"):
        if rec.get("kind") == "step" and rec.get("mean_return", 0) >= bar:
            return rec["env_steps"]
    return None


@pytest.mark.slow
def test_cartpole_reaches_195_within_100k_steps_for_three_seeds(tmp_path, nora_record):
    greedy = []
    for seed in (0, 1, 2):
        result = nora.train(nora.load_config(["trainer=ppo", "modes=pipeline", f"seed={seed}",
                                              "train.eval_every=1000"]),
                            run_dir=tmp_path / f"seed{seed}")
        reached = steps_to_reach(result.run_dir, 195.0)
        nora_record(f"seed{seed}_steps_to_195", reached)
        nora_record(f"seed{seed}_greedy_return", result.metrics["greedy_return"])
        assert reached is not None and reached <= 100_000, f"seed {seed}: {reached}"
        greedy.append(result.metrics["greedy_return"])
    assert statistics.median(greedy) >= 400, greedy


def test_a_short_ppo_run_learns(tmp_path):
    result = nora.train(nora.load_config(["trainer=ppo", "modes=pipeline", "seed=0",
                                          "train.epochs=15", "train.eval_every=1000",
                                          "trainer.eval_episodes=0"]), run_dir=tmp_path)
    steps = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r.get("kind") == "step"]
    early, late = steps[2]["mean_return"], steps[-1]["mean_return"]
    assert late > 1.5 * early, (early, late)
