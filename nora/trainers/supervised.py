"""A small CNN on the bundled digits: seeded data order and augmentation, dropout and
batch norm, optional AMP, a cosine LR schedule, evaluation and full checkpoints."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from nora.checkpoint import load_checkpoint, save_checkpoint
from nora.errors import CheckpointError
from nora.hashing import fingerprint
from nora.seeding import torch_generator
from nora.trainers.common import ScheduledLR, capture_rng, config_hash, flat_state, restore_rng
from nora.trainers.data import BatchIndexDataset, augment, load_digits
from nora.trainers.models import DigitsCNN, init_parameters
from nora.trainers.shards import Shards


class SupervisedTrainer:
    kind = "supervised"

    def __init__(self, run: Any, device: torch.device, *, progress: bool = False) -> None:
        self.run, self.device, self.progress = run, device, progress
        cfg, k = run.config, run.knobs
        tc, self.tc, self.train_cfg = cfg.trainer, cfg.trainer, cfg.train
        self.data = load_digits(tc.test_fraction, tc.train_subset)
        self.x_test = self.data.x_test.to(device)
        self.y_test = self.data.y_test.to(device)
        with torch.random.fork_rng(devices=[]):  # layer constructors draw from the global RNG
            self.model = DigitsCNN(tc.channels, tc.hidden, tc.dropout, tc.batch_norm)
        init_parameters(self.model, torch_generator(k.seed, "init"))
        self.model.to(device)
        self.shards = Shards(cfg.ddp, k.seed)
        self.net = self.shards.wrap(self.model, device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.train.lr,
                                           weight_decay=cfg.train.weight_decay)
        n = len(self.data.y_train)
        self.steps_per_epoch = self.shards.steps_per_epoch(n, cfg.train.batch_size)
        self.schedule_steps = cfg.train.epochs * self.steps_per_epoch
        self.total_steps = min(self.schedule_steps, cfg.train.max_steps or self.schedule_steps)
        self.lr = ScheduledLR(self.optimizer, cfg.train.lr_schedule, self.schedule_steps)
        self.aug_gens = self.shards.generators("augment")
        self.scaler: torch.amp.GradScaler | None = None
        if k.amp and k.grad_scaler:
            self.scaler = torch.amp.GradScaler(device.type)
        self.skip_step = False
        self.position = {"epoch": 0, "batch": 0, "step": 0}
        self.ckpt_dir = run.run_dir / "checkpoints"

    @property
    def dataset_fingerprint(self) -> str:
        return self.data.fingerprint

    # --- what violations and the agent act on --------------------------------------
    @property
    def base_lr(self) -> float:
        return self.lr.base_lr

    def set_lr(self, lr: float) -> None:
        self.lr.set_base_lr(lr)

    def enable_grad_scaler(self) -> None:
        k = self.run.knobs
        k.amp, k.grad_scaler, k.static_loss_scale = True, True, None
        self.scaler = torch.amp.GradScaler(self.device.type)
        self.skip_step = True

    # --- data ----------------------------------------------------------------------
    def _batches(self, epoch: int, start: int) -> DataLoader:
        n, bs = len(self.data.y_train), self.train_cfg.batch_size
        order = torch.randperm(n, generator=torch_generator(self.run.knobs.seed, "order", epoch))
        batches = self.shards.batches(order, bs)[start:]
        k = self.run.knobs
        parallel = {}
        if k.loader_workers:
            # Deep prefetch hands every batch of the epoch to the workers at once, so with
            # in_order=False the whole epoch's order is a race between them, not just its start.
            parallel = {"in_order": k.loader_in_order,
                        "prefetch_factor": max(2, min(64, -(-len(batches) // k.loader_workers)))}
        return DataLoader(BatchIndexDataset(self.data.x_train, self.data.y_train),
                          sampler=batches, batch_size=None, num_workers=k.loader_workers,
                          generator=torch_generator(k.seed, "loader", epoch), **parallel)

    def _transform(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if not self.tc.augment:
            return x
        return augment(x, gen, self.tc.max_shift, self.tc.noise_std)

    # --- training ------------------------------------------------------------------
    def _backward(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> float:
        k = self.run.knobs
        x, y = self._transform(x, gen).to(self.device), y.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=k.amp):
            logits = self.net(x)
        loss = F.cross_entropy(logits.float(), y)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        elif k.amp and k.static_loss_scale:
            (loss * k.static_loss_scale).backward()
            for p in self.model.parameters():
                p.grad.div_(k.static_loss_scale)
        else:
            loss.backward()
        return loss.item()

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        k, run, opt = self.run.knobs, self.run, self.optimizer
        opt.zero_grad(set_to_none=True)
        loss_val = self.shards.step(self.model, x, y, self.aug_gens, self._backward)
        nonfinite: list[str] = []
        if run.watches_amp and k.amp and self.scaler is None:
            nonfinite = [n for n, p in self.model.named_parameters()
                         if not torch.isfinite(p.grad).all()]
        run.check_step(loss_val, not nonfinite, nonfinite)
        if self.skip_step:
            self.skip_step = False
            opt.zero_grad(set_to_none=True)
            opt._opt_called = True  # a deliberately skipped step; keeps the LR schedule in step
        elif self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        self.lr.step()
        return loss_val

    def fit(self) -> dict[str, Any]:
        run, cfg = self.run, self.train_cfg
        step = self.position["step"]
        bar = tqdm(total=self.total_steps, initial=step, disable=not self.progress,
                   desc="train", unit="step", leave=False)
        for epoch in range(self.position["epoch"], cfg.epochs):
            if step >= self.total_steps:
                break
            start = self.position["batch"] if epoch == self.position["epoch"] else 0
            self.model.train()
            for b, (x, y) in enumerate(self._batches(epoch, start), start=start):
                run.begin_step(step, epoch)
                loss = self._train_step(x, y)
                run.end_step(loss, self.lr.lr, self.model)
                step += 1
                self.position = {"epoch": epoch, "batch": b + 1, "step": step}
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:  # verify (issue 10)
                    run.step = step
                    self._checkpoint(f"step_{step}.pt")
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss:.3f}")
                if step >= self.total_steps:
                    break
            run.step = step
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

    def _checkpoint(self, name: str) -> None:
        path = self.ckpt_dir / name
        sha = self.save_checkpoint(path)
        self.run.on_checkpoint(path, sha, self.saved_parts, self.final_state())

    # --- evaluation ----------------------------------------------------------------
    def _eval_logits(self) -> torch.Tensor:
        x = self.x_test
        if self.run.knobs.eval_augment:
            x = augment(x.cpu(), self.aug_gens[0], self.tc.max_shift,
                        self.tc.noise_std).to(self.device)
        with torch.no_grad():
            return self.model(x).float()

    def evaluate(self, *, record: bool = True) -> dict[str, Any]:
        k = self.run.knobs
        self.model.train(not k.eval_mode)
        if record:
            self.run.eval_start({"model_training": self.model.training,
                                 "eval_transform_probe": self._probe_eval_transform,
                                 "stochastic_modules": ["Dropout", "BatchNorm2d"]})
            self.model.train(not k.eval_mode)
        logits = self._eval_logits()
        self.model.train()
        loss = F.cross_entropy(logits, self.y_test).item()
        acc = (logits.argmax(1) == self.y_test).float().mean().item()
        metrics = {"loss": loss, "accuracy": acc, "logits_hash": fingerprint(logits)}
        if record:
            self.run.on_eval(metrics)
        return metrics

    def _probe_eval_transform(self) -> bool:
        """Whether the eval input pipeline gives the same batch twice (no hidden randomness)."""
        if not self.run.knobs.eval_augment:
            return True
        probe = self.data.x_test[:8]
        a = augment(probe, self.aug_gens[0], self.tc.max_shift, self.tc.noise_std)
        b = augment(probe, self.aug_gens[0], self.tc.max_shift, self.tc.noise_std)
        return torch.equal(a, b)

    def evals_repeatable(self) -> bool:
        """Two evaluations in a row give the same logits and leave the model untouched."""
        before = fingerprint(self.model.state_dict())
        self.model.train(not self.run.knobs.eval_mode)
        a, b = self._eval_logits(), self._eval_logits()
        self.model.train()
        return torch.equal(a, b) and fingerprint(self.model.state_dict()) == before

    # --- checkpoints ---------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.lr.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {"enabled": False},
            "rng": capture_rng(self._generators()),
            "position": dict(self.position),
            "agent": self.run.agent_state(),
            "config_hash": config_hash(self.run.config),
        }

    def _generators(self) -> dict[str, torch.Generator]:
        return {f"augment.{i}": g for i, g in enumerate(self.aug_gens)}

    def save_checkpoint(self, path: str | Path) -> str:
        state = self._state()
        parts = {k: v for k, v in state.items() if k in self.run.knobs.checkpoint_parts}
        self.saved_parts = dict.fromkeys(parts, True)
        return save_checkpoint(parts, path)

    def load(self, path: str | Path) -> list[str]:
        """Resume from a checkpoint; returns the parts it lacked (left freshly initialised)."""
        state = load_checkpoint(path, map_location=self.device)
        expected = config_hash(self.run.config)
        if "config_hash" in state and state["config_hash"] != expected:
            raise CheckpointError(f"checkpoint {str(path)!r} was written by a run with another "
                                  "config (seed, trainer, train or repro differ)")
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:
            self.lr.scheduler.load_state_dict(state["scheduler"])
            self.lr.set_base_lr(self.lr.base_lr)
        if "scaler" in state and self.scaler is not None and state["scaler"].get("enabled", True):
            self.scaler.load_state_dict(state["scaler"])
        if "rng" in state:
            restore_rng(state["rng"], self._generators())
        self.position = dict(state.get("position", self.position))
        if "agent" in state:
            self.run.load_agent_state(state["agent"])
        missing = [p for p in ("optimizer", "scheduler", "scaler", "rng", "agent")
                   if p not in state]
        return missing

    def final_state(self) -> dict[str, torch.Tensor]:
        return flat_state(self.model, self.optimizer)
