"""PPO as a NORA trainer, on the seams: the learner of ``ppo_engine`` with the run's
generators, precision policy, minibatch loader, evaluation pipeline and checkpoints. One
NORA step is one PPO iteration (a rollout plus its update). An example and a negative
control for reinforcement learning."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from nora.context import RunContext
from nora.errors import CheckpointError
from nora.hashing import fingerprint
from nora.progress import progress_bar
from nora.trainers.common import config_hash, flat_state
from nora.trainers.configs import PPOConfig
from nora.trainers.ppo_engine import PPOLearner

_POSITION = ("format", "env_id", "num_envs", "num_steps", "seed", "iteration_index",
             "env_steps", "rollout", "env")


class MinibatchChunks(Dataset):
    """Minibatch index chunks of one shuffled permutation, one chunk per item."""

    def __init__(self, chunks: list[torch.Tensor]) -> None:
        self.chunks = chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.stack([c.clone() for c in self.chunks[i]])


class PPOTrainer:
    Config = PPOConfig
    inapplicable = frozenset({"eval_mode_bug"})  # the policy has no dropout or batch norm

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.config_hash = config_hash(ctx.config)   # a run's config never changes
        cfg = ctx.config
        self.cfg = ctx.trainer_config
        self.learner = PPOLearner(self.cfg, cfg.train, seed=ctx.seed, device=ctx.device)
        lr = self.learner
        ctx.generators.adopt("ppo.sample", lr._g_sample)
        ctx.generators.adopt("ppo.minibatch", lr._g_minibatch)
        p = ctx.precision  # the run's precision seam becomes the learner's policy
        if p.static_loss_scale is None:  # as configured: bf16 on CPU, fp16 + scaler on CUDA
            p.dtype = lr._amp_dtype
            p.scaler = p.scaler if lr._amp_dtype is torch.float16 else None
        lr.precision = p
        lr.step_hook = ctx.after_backward
        lr.minibatch_order = self._minibatches
        self.total_steps = min(cfg.train.epochs, cfg.train.max_steps or cfg.train.epochs)
        ctx.total_steps = self.total_steps
        ctx.track_optimizer(lr.optimizer, schedule=self._factor,
                            position=lambda: lr.iteration_index,
                            get_base=lambda: lr.base_lr, set_base=lr.set_lr)
        noise = self.cfg.obs_noise_std
        ctx.augment = lambda x, g: x + noise * torch.randn(x.shape, generator=g)
        ctx.augment_generator = ctx.generator("ppo", "eval_leak")
        self.dataset_fingerprint = fingerprint({"env_id": self.cfg.env_id,
                                                "first_obs": lr._next_obs.cpu()})

    def _factor(self, t: int) -> float:
        from nora.trainers import ppo_math as pm
        train = self.ctx.config.train
        return pm.schedule(train.lr_schedule, 1.0, 0.0, t, train.epochs)

    def _minibatches(self, perm: torch.Tensor, mb: int) -> Any:
        """Minibatch index chunks through the run's loader seam (in order unless broken)."""
        chunks = [perm[s:s + mb] for s in range(0, len(perm), mb)]
        if not self.ctx.loader.workers:
            return iter(chunks)
        return self.ctx.dataloader(MinibatchChunks(chunks))

    # --- training ------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        ctx, train = self.ctx, self.ctx.config.train
        start = self.learner.iteration_index
        bar = progress_bar(self.total_steps, "ppo", ctx.progress, initial=start)
        metrics: dict[str, Any] = {}
        for i in range(start, self.total_steps):
            ctx.begin_step(i, i)
            metrics = self.learner.iteration()
            ctx.end_step(metrics["loss"], self.learner.model,
                         mean_return=metrics["mean_return"], env_steps=metrics["env_steps"])
            bar.update(1)
            ctx.step = i + 1
            done = i + 1 == self.total_steps
            if (i + 1) % train.eval_every == 0 or i + 1 == train.epochs:  # not on interruption
                self.evaluate()
            if train.checkpoint_every and (i + 1) % train.checkpoint_every == 0:
                self._checkpoint(f"step_{i + 1}.pt")  # kept for nora verify
            if done or (train.checkpoint_every and (i + 1) % train.checkpoint_every == 0):
                self._checkpoint("last.pt")
        bar.close()
        final = self.evaluate(record=False)
        final["mean_return"] = metrics.get("mean_return", float("nan"))
        final["env_steps"] = self.learner.env_steps
        final["eval_repeatable"] = self.evals_repeatable()
        return final

    # --- evaluation ----------------------------------------------------------------
    def _eval_returns(self) -> list[float]:
        return self.learner.evaluate_greedy(self.cfg.eval_episodes,
                                            transform=self.ctx.evaluation.apply)

    def evaluate(self, *, record: bool = True) -> dict[str, Any]:
        ctx, model = self.ctx, self.learner.model
        if record:
            with ctx.evaluating(model):
                ctx.eval_input(torch.zeros(4, self.learner._obs_dim), model)
        returns = self._eval_returns()
        mean = sum(returns) / len(returns) if returns else float("nan")
        metrics = {"greedy_return": mean, "loss": -mean, "returns_hash": fingerprint(returns)}
        if record:
            ctx.record_eval(metrics)
        return metrics

    def evals_repeatable(self) -> bool:
        return self._eval_returns() == self._eval_returns()

    # --- checkpoints ---------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        sd = self.learner.state_dict()
        return {
            "model": sd["model"], "optimizer": sd["optimizer"],
            "scheduler": {"base_lr": sd["base_lr"]},
            "scaler": sd["scaler"],
            "rng": self.ctx.rng_state(),
            "position": {k: sd[k] for k in _POSITION},
            "config_hash": self.config_hash,
        }

    def _checkpoint(self, name: str) -> None:
        self.ctx.save_checkpoint(self._state(), name)

    def load(self, path: str | Path) -> list[str]:
        state = self.ctx.load_checkpoint(path)
        if "config_hash" in state and state["config_hash"] != self.config_hash:
            raise CheckpointError(f"checkpoint {str(path)!r} was written by a run with another "
                                  "config (seed, trainer, train or repro differ)")
        sd: dict[str, Any] = dict(state.get("position", {}))
        for key in ("model", "optimizer", "scaler"):
            if key in state:
                sd[key] = state[key]
        if "scheduler" in state:
            sd["base_lr"] = state["scheduler"]["base_lr"]
        self.learner.load_state_dict(sd, strict=False)
        if "rng" in state:
            self.ctx.restore_rng(state["rng"])
        return [p for p in ("optimizer", "scheduler", "scaler", "rng", "agent") if p not in state]

    def final_state(self) -> dict[str, torch.Tensor]:
        return flat_state(self.learner.model, self.learner.optimizer)
