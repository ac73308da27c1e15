"""A complete trainer under NORA: an MLP with dropout on scikit-learn's wine data.

It trains only through the ``RunContext`` it is given (generators, data loader, precision,
evaluation, checkpoints, step records), so every NORA violation, the agent, replay and
resume work on it without a line of NORA-specific logic. Register it with one entry point:

    [project.entry-points."nora.trainers"]
    wine = "nora_wine:WineTrainer"
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import nora


class WineConfig(nora.TrainerConfig):
    hidden: int = Field(32, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)
    noise_std: float = Field(0.1, ge=0)


class Rows(torch.utils.data.Dataset):
    """Hands out a whole batch for a list of row indices."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[rows], self.y[rows]


def wine_data() -> tuple[torch.Tensor, ...]:
    """Standardised features and a fixed 70/30 split (the split belongs to the data)."""
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cut = int(0.7 * len(y))
    return x[perm[:cut]], y[perm[:cut]], x[perm[cut:]], y[perm[cut:]]


class WineTrainer:
    Config = WineConfig

    def __init__(self, ctx: nora.RunContext) -> None:
        self.ctx, cfg, train = ctx, ctx.trainer_config, ctx.config.train
        self.x, self.y, self.x_test, self.y_test = wine_data()
        with torch.random.fork_rng(devices=[]):
            self.model = nn.Sequential(nn.Linear(13, cfg.hidden), nn.ReLU(),
                                       nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, 3))
        g = ctx.generator("init")
        for p in self.model.parameters():
            nn.init.normal_(p, std=0.1, generator=g)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=train.lr)
        self.steps_per_epoch = math.ceil(len(self.y) / train.batch_size)
        total = train.epochs * self.steps_per_epoch
        self.factor = lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self.factor)
        ctx.track_optimizer(self.opt, schedule=self.factor,
                            position=lambda: self.sched.last_epoch,
                            get_base=lambda: self.sched.base_lrs[0], set_base=self._set_base)
        self.total_steps = min(total, train.max_steps or total)
        ctx.total_steps = self.total_steps
        ctx.augment = lambda x, gen: x + cfg.noise_std * torch.randn(x.shape, generator=gen)
        ctx.augment_generator = ctx.generator("augment")
        self.position = {"epoch": 0, "batch": 0, "step": 0}

    def _set_base(self, lr: float) -> None:
        self.sched.base_lrs = [lr]
        for group in self.opt.param_groups:
            group["lr"] = lr * self.factor(self.sched.last_epoch)

    def fit(self) -> dict[str, Any]:
        ctx, train = self.ctx, self.ctx.config.train
        step = self.position["step"]
        for epoch in range(self.position["epoch"], train.epochs):
            start = self.position["batch"] if epoch == self.position["epoch"] else 0
            order = torch.randperm(len(self.y),
                                   generator=ctx.generator("order", epoch, per_epoch=True))
            batches = [order[i:i + train.batch_size].tolist()
                       for i in range(0, len(order), train.batch_size)][start:]
            self.model.train()
            # a loader without a generator draws its base seed from the global RNG, which
            # would shift dropout after a resume: give it its own stream
            loader = ctx.dataloader(Rows(self.x, self.y), sampler=batches,
                                    generator=ctx.generator("loader", epoch, per_epoch=True))
            for b, (x, y) in enumerate(loader, start=start):
                if step >= self.total_steps:
                    break
                ctx.begin_step(step, epoch, batch=(x, y))
                self.opt.zero_grad(set_to_none=True)
                with ctx.autocast():
                    logits = self.model(ctx.augment(x, ctx.augment_generator))
                loss = ctx.backward(F.cross_entropy(logits.float(), y), self.model)
                ctx.after_backward()
                ctx.optimizer_step(self.opt)
                self.sched.step()
                ctx.end_step(loss, self.model)
                step += 1
                self.position = {"epoch": epoch, "batch": b + 1, "step": step}
            ctx.step = step
            if self.position["batch"] >= self.steps_per_epoch:
                self.position = {"epoch": epoch + 1, "batch": 0, "step": step}
                self.evaluate()
            ctx.save_checkpoint(self.state())
            if step >= self.total_steps:
                break
        return self.evaluate(record=False)

    def evaluate(self, *, record: bool = True) -> dict[str, Any]:
        ctx = self.ctx
        with ctx.evaluating(self.model):
            x = ctx.eval_input(self.x_test, self.model) if record else \
                ctx.evaluation.apply(self.x_test)
            logits = self.model(x)
        metrics = {"loss": F.cross_entropy(logits, self.y_test).item(),
                   "accuracy": (logits.argmax(1) == self.y_test).float().mean().item()}
        if record:
            ctx.record_eval(metrics)
        return metrics

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "scaler": self.ctx.precision.state_dict(),
                "rng": self.ctx.rng_state(), "position": dict(self.position)}

    def load(self, path: str | Path) -> list[str]:
        state = self.ctx.load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        for part, obj in (("optimizer", self.opt), ("scheduler", self.sched)):
            if part in state:
                obj.load_state_dict(state[part])
        if "rng" in state:
            self.ctx.restore_rng(state["rng"])
        self.position = dict(state.get("position", self.position))
        return [p for p in ("optimizer", "scheduler", "rng") if p not in state]

    def final_state(self) -> dict[str, torch.Tensor]:
        return {f"model.{k}": v.detach().clone() for k, v in self.model.state_dict().items()}
