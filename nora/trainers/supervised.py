"""A small CNN on the bundled digits, written on NORA's seams: seeded data order and
augmentation, dropout and batch norm, optional AMP, a cosine LR schedule, evaluation and
full checkpoints. An example of a trainer, and a negative control."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nora.context import RunContext
from nora.errors import CheckpointError
from nora.hashing import fingerprint
from nora.progress import progress_bar
from nora.trainers.common import ScheduledLR, config_hash, flat_state
from nora.trainers.configs import SupervisedConfig
from nora.trainers.data import BatchIndexDataset, augment, load_digits
from nora.trainers.models import DigitsCNN, init_parameters
from nora.trainers.shards import Shards


class SupervisedTrainer:
    Config = SupervisedConfig

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.config_hash = config_hash(ctx.config)   # a run's config never changes
        cfg, tc = ctx.config, ctx.trainer_config
        self.tc, self.train_cfg, device = tc, cfg.train, ctx.device
        self.data = load_digits(tc.test_fraction, tc.train_subset)
        self.x_test = self.data.x_test.to(device)
        self.y_test = self.data.y_test.to(device)
        with torch.random.fork_rng(devices=[]):  # layer constructors draw from the global RNG
            self.model = DigitsCNN(tc.channels, tc.hidden, tc.dropout, tc.batch_norm)
        init_parameters(self.model, ctx.generator("init"))
        self.model.to(device)
        self.shards = Shards(cfg.ddp, ctx.seed, make=ctx.generator)
        self.net = self.shards.wrap(self.model, device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.train.lr,
                                           weight_decay=cfg.train.weight_decay)
        n = len(self.data.y_train)
        self.steps_per_epoch = self.shards.steps_per_epoch(n, cfg.train.batch_size)
        self.schedule_steps = cfg.train.epochs * self.steps_per_epoch
        self.total_steps = min(self.schedule_steps, cfg.train.max_steps or self.schedule_steps)
        ctx.total_steps = self.total_steps
        self.lr = ScheduledLR(self.optimizer, cfg.train.lr_schedule, self.schedule_steps)
        ctx.track_optimizer(self.optimizer, schedule=self.lr.factor,
                            position=lambda: self.lr.scheduler.last_epoch,
                            get_base=lambda: self.lr.base_lr, set_base=self.lr.set_base_lr)
        self.aug_gens = self.shards.generators("augment")
        ctx.augment, ctx.augment_generator = self._augment, self.aug_gens[0]
        self.position = {"epoch": 0, "batch": 0, "step": 0}
        self.dataset_fingerprint = self.data.fingerprint

    def _augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return augment(x.cpu(), gen, self.tc.max_shift, self.tc.noise_std).to(x.device)

    # --- data ----------------------------------------------------------------------
    def _batches(self, epoch: int, start: int) -> Any:
        n, bs = len(self.data.y_train), self.train_cfg.batch_size
        order = torch.randperm(n, generator=self.ctx.generator("order", epoch,
                                                               per_epoch=True))
        batches = self.shards.batches(order, bs)[start:]
        return self.ctx.dataloader(BatchIndexDataset(self.data.x_train, self.data.y_train),
                                   sampler=batches,
                                   generator=self.ctx.generator("loader", epoch,
                                                                per_epoch=True))

    # --- training ------------------------------------------------------------------
    def _backward(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> float:
        ctx = self.ctx
        if self.tc.augment:
            x = augment(x, gen, self.tc.max_shift, self.tc.noise_std)
        x, y = x.to(ctx.device), y.to(ctx.device)
        with ctx.autocast():
            logits = self.net(x)
        return ctx.backward(F.cross_entropy(logits.float(), y), self.model)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.shards.step(self.model, x, y, self.aug_gens, self._backward)
        self.ctx.precision.last_loss = loss  # rank 0's loss under emulation
        self.ctx.after_backward()
        self.ctx.optimizer_step(self.optimizer)
        self.lr.step()
        return loss

    def fit(self) -> dict[str, Any]:
        ctx, cfg = self.ctx, self.train_cfg
        step = self.position["step"]
        bar = progress_bar(self.total_steps, "train", ctx.progress, initial=step)
        every = cfg.checkpoint_every
        for epoch in range(self.position["epoch"], cfg.epochs):
            if step >= self.total_steps:
                break
            start = self.position["batch"] if epoch == self.position["epoch"] else 0
            self.model.train()
            for b, (x, y) in enumerate(self._batches(epoch, start), start=start):
                ctx.begin_step(step, epoch, batch=(x, y))
                loss = self._train_step(x, y)
                ctx.end_step(loss, self.model)
                step += 1
                self.position = {"epoch": epoch, "batch": b + 1, "step": step}
                bar.update(1)
                if every and step % every == 0:  # kept for nora verify
                    ctx.step = step
                    self._checkpoint(f"step_{step}.pt")
                if step >= self.total_steps:
                    break
            ctx.step = step
            finished = self.position["batch"] >= self.steps_per_epoch
            if finished:
                self.position = {"epoch": epoch + 1, "batch": 0, "step": step}
            # an interruption mid-epoch (train.max_steps) checkpoints without evaluating, so
            # the agent sees the same evaluations as in the uninterrupted run
            if finished and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                self.evaluate()
            self._checkpoint("last.pt")
        bar.close()
        final = self.evaluate(record=False)
        final["eval_repeatable"] = self.evals_repeatable()
        return final

    # --- evaluation ----------------------------------------------------------------
    def evaluate(self, *, record: bool = True) -> dict[str, Any]:
        ctx = self.ctx
        with ctx.evaluating(self.model):
            x = ctx.eval_input(self.x_test, self.model) if record else \
                ctx.evaluation.apply(self.x_test)
            logits = self.model(x).float()
        loss = F.cross_entropy(logits, self.y_test).item()
        acc = (logits.argmax(1) == self.y_test).float().mean().item()
        metrics = {"loss": loss, "accuracy": acc, "logits_hash": fingerprint(logits)}
        if record:
            ctx.record_eval(metrics)
        return metrics

    def evals_repeatable(self) -> bool:
        """Two evaluations in a row give the same logits and leave the model untouched."""
        before = fingerprint(self.model.state_dict())
        with self.ctx.evaluating(self.model):
            a = self.model(self.ctx.evaluation.apply(self.x_test))
            b = self.model(self.ctx.evaluation.apply(self.x_test))
        return torch.equal(a, b) and fingerprint(self.model.state_dict()) == before

    # --- checkpoints ---------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.lr.scheduler.state_dict(),
            "scaler": self.ctx.precision.state_dict(),
            "rng": self.ctx.rng_state(),
            "position": dict(self.position),
            "config_hash": self.config_hash,
        }

    def _checkpoint(self, name: str) -> None:
        self.ctx.save_checkpoint(self._state(), name)

    def load(self, path: str | Path) -> list[str]:
        """Resume from a checkpoint; returns the parts it lacked (left freshly initialised)."""
        state = self.ctx.load_checkpoint(path)
        if "config_hash" in state and state["config_hash"] != self.config_hash:
            raise CheckpointError(f"checkpoint {str(path)!r} was written by a run with another "
                                  "config (seed, trainer, train or repro differ)")
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:
            self.lr.scheduler.load_state_dict(state["scheduler"])
            self.lr.set_base_lr(self.lr.base_lr)
        if "scaler" in state:
            self.ctx.precision.load_state_dict(state["scaler"])
        if "rng" in state:
            self.ctx.restore_rng(state["rng"])
        self.position = dict(state.get("position", self.position))
        return [p for p in ("optimizer", "scheduler", "scaler", "rng", "agent") if p not in state]

    def final_state(self) -> dict[str, torch.Tensor]:
        return flat_state(self.model, self.optimizer)
