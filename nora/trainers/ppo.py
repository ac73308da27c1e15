"""PPO as a NORA trainer: the learner of ``ppo_engine`` under the run's knobs, monitor and
agent. One NORA step is one PPO iteration (a rollout plus its update)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from nora.checkpoint import load_checkpoint, save_checkpoint
from nora.errors import CheckpointError
from nora.hashing import fingerprint
from nora.seeding import torch_generator
from nora.trainers.common import capture_rng, config_hash, flat_state, restore_rng
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


def _unordered_minibatches(perm: torch.Tensor, mb: int) -> DataLoader:
    """Minibatches handed out by two workers as they finish (nondeterminism_enabled)."""
    chunks = [perm[s:s + mb] for s in range(0, len(perm), mb)]
    return DataLoader(MinibatchChunks(chunks), batch_size=None, num_workers=2, in_order=False,
                      prefetch_factor=max(2, -(-len(chunks) // 2)))  # all at once: a real race


class PPOTrainer:
    kind = "ppo"

    def __init__(self, run: Any, device: torch.device, *, progress: bool = False) -> None:
        self.run, self.device, self.progress = run, device, progress
        cfg, k = run.config, run.knobs
        self.cfg = cfg.trainer
        self.learner = PPOLearner(cfg.trainer, cfg.train, seed=k.seed, device=device)
        self.learner.step_hook = self._after_backward
        if k.amp and not k.grad_scaler and k.static_loss_scale:
            self.learner.static_loss_scale = k.static_loss_scale
        if k.loader_workers and not k.loader_in_order:
            self.learner.minibatch_order = _unordered_minibatches
        self.total_steps = min(cfg.train.epochs, cfg.train.max_steps or cfg.train.epochs)
        self.eval_noise = torch_generator(k.seed, "ppo", "eval_leak")
        self.skip_step = False
        self._dataset_fp = fingerprint({"env_id": self.cfg.env_id,
                                        "first_obs": self.learner._next_obs.cpu()})

    @property
    def dataset_fingerprint(self) -> str:
        return self._dataset_fp

    # --- what violations and the agent act on --------------------------------------
    @property
    def base_lr(self) -> float:
        return self.learner.base_lr

    def set_lr(self, lr: float) -> None:
        self.learner.set_lr(lr)

    def enable_grad_scaler(self) -> None:
        k = self.run.knobs
        k.amp, k.grad_scaler, k.static_loss_scale = True, True, None
        self.learner.static_loss_scale = None
        self.learner.scaler = torch.amp.GradScaler(self.device.type, enabled=True)
        self.skip_step = True

    def _after_backward(self, loss: float) -> bool:
        """Per minibatch: let the monitor look at the loss and gradients; True skips the step."""
        run = self.run
        nonfinite: list[str] = []
        if run.watches_amp and self.learner.static_loss_scale:
            nonfinite = [n for n, p in self.learner.model.named_parameters()
                         if p.grad is not None and not torch.isfinite(p.grad).all()]
        run.check_step(loss, not nonfinite, nonfinite)
        skip, self.skip_step = self.skip_step, False
        return skip

    # --- training ------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        run, train = self.run, self.run.config.train
        start = self.learner.iteration_index
        bar = tqdm(total=self.total_steps, initial=start, disable=not self.progress,
                   desc="ppo", unit="iter", leave=False)
        metrics: dict[str, Any] = {}
        for i in range(start, self.total_steps):
            run.begin_step(i, i)
            metrics = self.learner.iteration()
            run.end_step(metrics["loss"], metrics["lr"], self.learner.model,
                         mean_return=metrics["mean_return"], env_steps=metrics["env_steps"])
            bar.update(1)
            bar.set_postfix(ret=f"{metrics['mean_return']:.1f}")
            run.step = i + 1
            done = i + 1 == self.total_steps
            if (i + 1) % train.eval_every == 0 or i + 1 == train.epochs:  # not on interruption
                self.evaluate()
            if train.checkpoint_every and (i + 1) % train.checkpoint_every == 0:  # verify (issue 10)
                self._checkpoint(f"step_{i + 1}.pt")
            if done:
                self._checkpoint("last.pt")
        bar.close()
        final = self.evaluate(record=False)
        final["mean_return"] = metrics.get("mean_return", float("nan"))
        final["env_steps"] = self.learner.env_steps
        final["eval_repeatable"] = self.evals_repeatable()
        return final

    # --- evaluation ----------------------------------------------------------------
    def _eval_returns(self) -> list[float]:
        leak = self.run.knobs.eval_augment
        return self.learner.evaluate_greedy(
            self.cfg.eval_episodes, obs_noise_std=self.cfg.obs_noise_std if leak else 0.0,
            generator=self.eval_noise if leak else None)

    def evaluate(self, *, record: bool = True) -> dict[str, Any]:
        if record:
            self.run.eval_start({"model_training": False,
                                 "eval_transform_probe": self._probe_eval_transform})
        returns = self._eval_returns()
        mean = sum(returns) / len(returns) if returns else float("nan")
        metrics = {"greedy_return": mean, "loss": -mean, "returns_hash": fingerprint(returns)}
        if record:
            self.run.on_eval(metrics)
        return metrics

    def _probe_eval_transform(self) -> bool:
        if not self.run.knobs.eval_augment or not self.cfg.obs_noise_std:
            return True
        x = torch.zeros(4)
        return torch.equal(x + torch.randn(4, generator=self.eval_noise),
                           x + torch.randn(4, generator=self.eval_noise))

    def evals_repeatable(self) -> bool:
        return self._eval_returns() == self._eval_returns()

    # --- checkpoints ---------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        sd = self.learner.state_dict()
        return {
            "model": sd["model"], "optimizer": sd["optimizer"],
            "scheduler": {"base_lr": sd["base_lr"]},
            "scaler": sd["scaler"] or {"enabled": False},
            "rng": {**capture_rng({"eval_leak": self.eval_noise}), "learner": sd["generators"]},
            "position": {k: sd[k] for k in _POSITION},
            "agent": self.run.agent_state(),
            "config_hash": config_hash(self.run.config),
        }

    def save_checkpoint(self, path: str | Path) -> str:
        parts = {k: v for k, v in self._state().items() if k in self.run.knobs.checkpoint_parts}
        self.saved_parts = dict.fromkeys(parts, True)
        return save_checkpoint(parts, path)

    def _checkpoint(self, name: str) -> None:
        path = self.run.run_dir / "checkpoints" / name
        sha = self.save_checkpoint(path)
        self.run.on_checkpoint(path, sha, self.saved_parts, self.final_state())

    def load(self, path: str | Path) -> list[str]:
        state = load_checkpoint(path, map_location="cpu")
        if "config_hash" in state and state["config_hash"] != config_hash(self.run.config):
            raise CheckpointError(f"checkpoint {str(path)!r} was written by a run with another "
                                  "config (seed, trainer, train or repro differ)")
        sd: dict[str, Any] = dict(state.get("position", {}))
        for key in ("model", "optimizer"):
            if key in state:
                sd[key] = state[key]
        if state.get("scaler", {}).get("enabled", True) and "scaler" in state:
            sd["scaler"] = state["scaler"]
        if "scheduler" in state:
            sd["base_lr"] = state["scheduler"]["base_lr"]
        if "rng" in state:
            sd["generators"] = state["rng"]["learner"]
            restore_rng(state["rng"], {"eval_leak": self.eval_noise})
        self.learner.load_state_dict(sd, strict=False)
        if "agent" in state:
            self.run.load_agent_state(state["agent"])
        return [p for p in ("optimizer", "scheduler", "scaler", "rng", "agent") if p not in state]

    def final_state(self) -> dict[str, torch.Tensor]:
        return flat_state(self.learner.model, self.learner.optimizer)
