"""Throughput and return of NORA's PPOLearner against stable-baselines3 PPO on CartPole-v1.

Both train with the same hyperparameters (8 envs, 128 steps per env, 4 epochs, minibatch
256, lr 2.5e-4 decayed linearly, clip 0.2, entropy 0.01, gamma 0.99, lambda 0.95,
vf_coef 0.5, max_grad_norm 0.5, 64x64 tanh actor and critic), on the CPU with one thread.
Runs alternate (and swap which goes first) so that load from other processes falls on
both. Only the training loop is timed; model construction is not. Each run is timed by
the wall clock and by the process's CPU time: with one thread and an idle machine the two
agree, and on a shared machine the CPU-time figure is the one that stays put, so the
closing ratio is the median over repetitions of NORA/SB3 CPU-time throughput
(``--clock wall`` for wall-clock throughput on a quiet machine).

    python benchmarks/bench_ppo.py [--reps 3] [--steps 50000] [--clock cpu|wall]

The last line is ``PPO throughput ratio: <NORA steps/s / SB3 steps/s>`` (medians).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nora.config.schema import TrainConfig
from nora.trainers.configs import PPOConfig  # noqa: E402
from nora.trainers.ppo_engine import PPOLearner  # noqa: E402

NUM_ENVS, NUM_STEPS, EPOCHS, MINIBATCH, LR = 8, 128, 4, 256, 2.5e-4


class Clock:
    """Wall and CPU seconds of one block."""

    def __enter__(self) -> "Clock":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def run_nora(total_steps: int, seed: int) -> tuple[int, Clock, float]:
    """Env steps, training time, final mean return (last 100 episodes)."""
    iterations = math.ceil(total_steps / (NUM_ENVS * NUM_STEPS))
    ppo = PPOConfig(name="ppo", env_id="CartPole-v1", num_envs=NUM_ENVS, num_steps=NUM_STEPS,
                    update_epochs=EPOCHS, gamma=0.99, gae_lambda=0.95, clip_start=0.2,
                    clip_end=0.2, ent_start=0.01, ent_end=0.01, vf_coef=0.5,
                    max_grad_norm=0.5, hidden=64, norm_adv=True, eval_episodes=0,
                    obs_noise_std=0.0, sampler_device="cpu")
    train = TrainConfig(epochs=iterations, batch_size=MINIBATCH, lr=LR, weight_decay=0.0,
                        lr_schedule="linear", amp=False, max_steps=None, checkpoint_every=0,
                        eval_every=1)
    learner = PPOLearner(ppo, train, seed=seed, device=torch.device("cpu"))
    with Clock() as clock:
        for _ in range(iterations):
            metrics = learner.iteration()
    return learner.env_steps, clock, metrics["mean_return"]


def run_sb3(total_steps: int, seed: int) -> tuple[int, Clock, float]:
    """Env steps, training time, final mean return (SB3's last-100-episode buffer)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("CartPole-v1", n_envs=NUM_ENVS, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=NUM_STEPS, batch_size=MINIBATCH, n_epochs=EPOCHS,
                learning_rate=lambda remaining: LR * remaining, gamma=0.99, gae_lambda=0.95,
                clip_range=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
                normalize_advantage=True, seed=seed, device="cpu", verbose=0)
    with Clock() as clock:
        model.learn(total_timesteps=total_steps)
    returns = [info["r"] for info in model.ep_info_buffer]
    return model.num_timesteps, clock, float(np.mean(returns)) if returns else math.nan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="which throughput the closing ratio uses (wall on a quiet machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runners = {"NORA": run_nora, "SB3": run_sb3}
    run_nora(4096, 12345), run_sb3(4096, 12345)  # warm up imports, allocators, caches
    rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runners}
    print(f"CartPole-v1, {args.steps} env steps, {NUM_ENVS} envs x {NUM_STEPS} steps, "
          f"{EPOCHS} epochs, minibatch {MINIBATCH}, 1 CPU thread, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for rep in range(args.reps):
        for name in (["NORA", "SB3"] if rep % 2 == 0 else ["SB3", "NORA"]):
            steps, clock, ret = runners[name](args.steps, args.seed + rep)
            rows[name].append((steps / clock.wall, steps / clock.cpu, ret))
            print(f"rep {rep}  {name:<4}  {steps / clock.wall:8.0f} env-steps/s wall  "
                  f"{steps / clock.cpu:8.0f} env-steps/s CPU   mean return {ret:6.1f}", flush=True)
    for name, got in rows.items():
        rets = [r for *_, r in got]
        med_wall, med_cpu = (statistics.median(x[i] for x in got) for i in (0, 1))
        per_rep = ", ".join(f"{r:.1f}" for r in rets)
        print(f"{name:<4}  median {med_wall:8.0f} env-steps/s wall  {med_cpu:8.0f} env-steps/s "
              f"CPU   final mean return {statistics.mean(rets):6.1f} (per rep: {per_rep})")
    ratios = {clock: [n[i] / s[i] for n, s in zip(rows["NORA"], rows["SB3"])]
              for i, clock in enumerate(("wall", "cpu"))}
    for clock, got in ratios.items():
        print(f"per-rep NORA/SB3 {clock:>4} ratios: {', '.join(f'{r:.2f}' for r in got)}  "
              f"(median {statistics.median(got):.2f})")
    print(f"PPO throughput ratio: {statistics.median(ratios[args.clock]):.2f}")


if __name__ == "__main__":
    main()
