"""NORA for a PyTorch Lightning fit: ``Trainer(callbacks=[NoraCallback()])``.

The callback writes a NORA run directory for the fit and reads what the fit really does:
whether ``seed_everything`` ran, torch's determinism switches, LR changes no scheduler
explains, non-finite gradients (unless the precision plugin's scaler handles them), a module
put back in train mode during validation, the loader's real position against Lightning's
``batch_idx`` after a resume, and every checkpoint Lightning writes (audited from its
contents, weights-only saves included). ``strict`` halts the fit with
``NormViolationError``; ``balanced`` repairs: every RNG state and the loader position go
into the checkpoint (``weights_only=True``-loadable) and are restored on resume, so a fit
resumed mid-epoch or at an epoch boundary is bit-identical to the uninterrupted one;
``exploratory`` records. In a clean fit the callback changes no number.
"""
from __future__ import annotations

import math
import os
import types
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from nora.integrations import detect
from nora.analysis.ckpt_audit import audit_state, describe
from nora.integrations.position import ResumableSampler, make_resumable
from nora.integrations.recorder import MonitorResult, Recorder
from nora.integrations.rng import capture_rng, restore_rng

__all__ = ["NoraCallback"]

_KEY = "nora"


class NoraCallback(pl.Callback):
    """Records, detectors and the regime's answer for a Lightning fit.

    Args:
        mode: ``pipeline`` (records only), ``agentic`` (runtime violations) or
            ``norm_aware`` (every norm).
        regime: ``strict``, ``balanced`` or ``exploratory``.
        run_dir: where the run directory goes (default ``runs/lightning_<timestamp>``).
        hash_every: a parameter hash every this many steps.
        seed: the seed ``balanced`` sets when the fit was not seeded.
    """

    def __init__(self, mode: str = "norm_aware", regime: str = "balanced",
                 run_dir: str | Path | None = None, *, hash_every: int = 10,
                 seed: int = 42) -> None:
        self.rec = Recorder("lightning", mode=mode, regime=regime, run_dir=run_dir,
                            hash_every=hash_every)
        self.seed = seed
        self.result: MonitorResult | None = None
        self._samplers: list[ResumableSampler] = []
        self._stash: dict[str, Any] | None = None
        self._expected_lr: dict[tuple[int, int], float] = {}
        self._accepted: dict[tuple[int, int], tuple[float, float]] = {}
        self._validating = False
        self._loss_finite = True
        self._low_precision = False
        self._before_step: tuple[dict, dict] | None = None

    @property
    def run_dir(self) -> Path:
        return self.rec.run_dir

    # ------------------------------------------------------------------ start
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self._low_precision = str(trainer.precision).startswith(("16", "bf16")) and scaler is None
        self.rec.start(seeds={"pl_global_seed": os.environ.get("PL_GLOBAL_SEED"),
                              "seed_workers": os.environ.get("PL_SEED_WORKERS") == "1"},
                       determinism=detect.determinism(),
                       lightning={"version": pl.__version__, "precision": str(trainer.precision),
                                  "grad_scaler": scaler is not None,
                                  "max_steps": trainer.max_steps,
                                  "max_epochs": trainer.max_epochs})
        self._wrap_save_hook(trainer, pl_module)
        if os.environ.get("PL_GLOBAL_SEED") is None:
            self.rec.found("missing_seed", event="startup", step=trainer.global_step,
                           evidence={"PL_GLOBAL_SEED": None, "torch_initial_seed":
                                     torch.initial_seed()},
                           message="seed_everything was not called before the fit: python "
                                   "and numpy start from OS entropy",
                           hint="call lightning.seed_everything(seed, workers=True) before "
                                "building the model", fix=self._fix_seed)
        problems = detect.determinism_problems(detect.determinism(),
                                               cuda=torch.cuda.is_available())
        if problems:
            self.rec.found("nondeterminism_enabled", event="startup", step=trainer.global_step,
                           evidence={"problems": problems, **detect.determinism()},
                           message="; ".join(problems),
                           hint="Trainer(deterministic=True)", fix=detect.fix_determinism)

    def _fix_seed(self) -> bool:
        pl.seed_everything(self.seed, workers=True, verbose=False)
        self.rec.record_change("seed", None, self.seed, step=0, source="agent:seed")
        return os.environ.get("PL_GLOBAL_SEED") == str(self.seed)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._stash = checkpoint.get(_KEY)
        if self._stash is None:
            audit = audit_state(checkpoint, expect_scheduler=bool(checkpoint.get("lr_schedulers")))
            self.rec.found("checkpoint_incomplete", event="checkpoint",
                           step=int(checkpoint.get("global_step", 0)),
                           evidence={"missing": audit["missing"], "details": audit["details"],
                                     "keys": sorted(map(str, checkpoint))},
                           message=f"resuming from a checkpoint NORA did not complete: "
                                   f"{describe(audit)}; the resumed fit cannot match the "
                                   "uninterrupted one", hint=_CKPT_HINT, key="load")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._samplers = [s for dl in _loaders(trainer.train_dataloader)
                          if (s := make_resumable(dl)) is not None]
        for i, opt in enumerate(trainer.optimizers):
            for j, lr in enumerate(detect.lrs(opt)):
                self._expected_lr[(i, j)] = lr
        if self._stash is not None and self.rec.regime == "balanced":
            restore_rng(self._stash["rng"])
            for sampler, state in zip(self._samplers, self._stash.get("loader", [])):
                sampler.load_state_dict(state, rng_after=self._stash["rng"]["torch"])

    # ------------------------------------------------------------------ steps
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        for s in self._samplers:
            if s.consumed != batch_idx and s.iterations:
                where = "restarts the epoch from its first batch" if s.consumed == 0 \
                    else f"is at batch {s.consumed}"
                self.rec.found("checkpoint_incomplete", event="step", step=trainer.global_step,
                               evidence={"lightning_batch_idx": batch_idx,
                                         "loader_batch": s.consumed,
                                         "batches_per_epoch": len(s) // s.batch_size},
                               message=f"Lightning resumed at batch_idx {batch_idx} but the "
                                       f"loader {where}: batches are trained twice or "
                                       "skipped (no loader position in the checkpoint)",
                               hint=_CKPT_HINT, key="position")

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        step = trainer.global_step
        i = next((k for k, o in enumerate(trainer.optimizers) if o is optimizer), 0)
        sched = {id(c.scheduler.optimizer): c.scheduler for c in trainer.lr_scheduler_configs}
        explained = sched.get(id(optimizer))
        for j, lr in enumerate(detect.lrs(optimizer)):
            expected = (explained.get_last_lr()[j] if explained is not None
                        else self._expected_lr.get((i, j), lr))
            if lr != expected and self._accepted.get((i, j)) != (expected, lr):
                self._accepted[(i, j)] = (expected, lr)     # one finding per change
                key = f"optimizer.{i}.param_groups.{j}.lr"
                self.rec.found("untracked_config_change", event="step", step=step,
                               evidence={"param": key, "expected": expected, "actual": lr,
                                         "scheduler": type(explained).__name__
                                         if explained else None},
                               message=f"{key} is {lr:g} where the "
                                       f"{'scheduler says' if explained else 'last step used'}"
                                       f" {expected:g}: a change nobody recorded",
                               hint="change the LR through a scheduler, or record the change",
                               fix=lambda k=key, a=expected, b=lr: self._track(k, a, b, step),
                               key=f"{key}@{step}")
            self._expected_lr[(i, j)] = lr
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return                      # the precision plugin's scaler skips overflowing steps
        # gradients are read where they can go non-finite with a finite loss (low precision)
        # and every hash_every steps; a non-finite loss always triggers the check
        bad = (detect.nonfinite_grads(pl_module) if self._low_precision or not self._loss_finite
               or step % self.rec.hash_every == 0 else [])
        if bad or not self._loss_finite:
            what = (f"non-finite gradients in {len(bad)} parameter(s) (first {bad[0]})"
                    if bad else "a non-finite loss")
            self.rec.found("amp_nan", event="step", step=step,
                           evidence={"nonfinite_grads": bad[:8], "loss_finite": self._loss_finite,
                                     "precision": str(trainer.precision), "grad_scaler": False},
                           message=f"{what} and no GradScaler to skip the step",
                           hint=_AMP_HINT, fix=lambda: _skip_step(pl_module), key="step")
        elif self._low_precision:       # an fp16 step can still overflow inside the optimizer
            self._before_step = (_copy(pl_module.state_dict()), _copy(optimizer.state_dict()))

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           loss: torch.Tensor) -> None:
        loss = loss.detach()
        self._loss_finite = (math.isfinite(loss.item()) if loss.numel() == 1
                             else bool(torch.isfinite(loss).all()))

    def _roll_back(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        """Undo the overflowing step: weights and optimizer state from before it."""
        weights, opt = self._before_step
        pl_module.load_state_dict(weights)
        trainer.optimizers[0].load_state_dict(opt)
        return all(bool(torch.isfinite(p).all()) for p in pl_module.parameters())

    def _track(self, key: str, old: float, new: float, step: int) -> bool:
        self.rec.record_change(key, old, new, step=step, source="untracked")
        return True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._before_step is not None:
            bad = [n for n, p in pl_module.named_parameters() if not bool(torch.isfinite(p).all())]
            if bad:
                self.rec.found("amp_nan", event="step", step=trainer.global_step,
                               evidence={"nonfinite_weights": bad[:8],
                                         "precision": str(trainer.precision)},
                               message=f"the optimizer step made {len(bad)} weight(s) "
                                       f"non-finite (first {bad[0]}) in {trainer.precision}",
                               hint=_AMP_HINT, fix=lambda: self._roll_back(trainer, pl_module),
                               key="weights")
            self._before_step = None
        for s in self._samplers:
            s.consumed += 1
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        lrs = [lr for opt in trainer.optimizers for lr in detect.lrs(opt)]
        self.rec.step(trainer.global_step, loss=None if loss is None else float(loss),
                      epoch=trainer.current_epoch, batch=batch, lrs=lrs, params=pl_module,
                      batch_idx=batch_idx)

    # ------------------------------------------------------------------ validation
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._validating = True
        original = type(pl_module).train

        def guarded(module: pl.LightningModule, mode: bool = True) -> Any:
            if mode and self._validating:
                action = self.rec.found(
                    "eval_mode_bug", event="eval", step=trainer.global_step,
                    evidence={"call": "train()", "stochastic": detect.stochastic_in_train(
                        module) or [n for n, m in module.named_modules()
                                    if isinstance(m, detect.STOCHASTIC)]},
                    message="the module was put in train mode during validation: dropout "
                            "draws and batch-norm statistics drift in evaluation",
                    hint="do not call self.train() in validation_step", fix=lambda: True,
                    key="train()")
                if action != "warn" and self.rec.regime == "balanced" and \
                        self.rec.watches("eval_mode_bug"):
                    return module       # blocked: evaluation stays in eval mode
            return original(module, mode)

        pl_module.train = types.MethodType(guarded, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validating = False
        pl_module.__dict__.pop("train", None)

    # ------------------------------------------------------------------ checkpoints
    def _wrap_save_hook(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The module's hook runs for every save, weights-only ones too (callbacks' do not)."""
        user_hook = pl_module.on_save_checkpoint

        def on_save_checkpoint(checkpoint: dict[str, Any]) -> None:
            user_hook(checkpoint)
            self._audit_save(trainer, checkpoint)

        pl_module.on_save_checkpoint = on_save_checkpoint

    def _audit_save(self, trainer: pl.Trainer, checkpoint: dict[str, Any]) -> None:
        expect_sched = bool(trainer.lr_scheduler_configs)
        audit = audit_state(checkpoint, expect_scheduler=expect_sched)
        if not audit["missing"]:
            return

        def fix() -> bool:
            if "optimizer" in audit["missing"] or "scheduler" in audit["missing"]:
                checkpoint["optimizer_states"] = [o.state_dict() for o in trainer.optimizers]
                checkpoint["lr_schedulers"] = [c.scheduler.state_dict()
                                               for c in trainer.lr_scheduler_configs]
            checkpoint.setdefault("callbacks", {})      # else Lightning skips on_load_checkpoint
            checkpoint[_KEY] = {"rng": capture_rng(),
                                "loader": [s.state_dict() for s in self._samplers]}
            return not audit_state(checkpoint, expect_scheduler=expect_sched)["missing"]

        step = trainer.global_step
        self.rec.found("checkpoint_incomplete", event="checkpoint", step=step,
                       evidence={"missing": audit["missing"], "details": audit["details"],
                                 "resumable_loader": bool(self._samplers)},
                       message=f"{describe(audit)}, so a resume cannot match the "
                               "uninterrupted fit", hint=_CKPT_HINT, fix=fix,
                       key="save")

    # ------------------------------------------------------------------ end
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self.result is None:
            self._restore_module(pl_module)
            self.result = self.rec.finish({k: v.detach().cpu()
                                           for k, v in pl_module.state_dict().items()},
                                          global_step=trainer.global_step)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        self._restore_module(pl_module)
        if self.result is None and self.rec.manifest.get("status") == "running":
            self.result = self.rec.finish(status="failed", error=repr(exception)[:500])

    def _restore_module(self, pl_module: pl.LightningModule) -> None:
        """Drop the validation guard; the save audit stays (a save after fit is audited)."""
        pl_module.__dict__.pop("train", None)


_AMP_HINT = "use precision='16-mixed' (its GradScaler skips overflowing steps) or bf16"
_CKPT_HINT = ("keep NoraCallback(regime='balanced') in the Trainer: it adds every RNG state and "
              "the loader position to the checkpoint and restores them")


def _skip_step(module: torch.nn.Module) -> bool:
    """Drop this step's gradients so the optimizer skips it; validated: weights finite."""
    for p in module.parameters():
        p.grad = None
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def _copy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy(v) for v in obj]
    return obj


def _loaders(obj: Any) -> list[Any]:
    if isinstance(obj, torch.utils.data.DataLoader):
        return [obj]
    if isinstance(obj, dict):
        return [dl for v in obj.values() for dl in _loaders(v)]
    if isinstance(obj, (list, tuple)):
        return [dl for v in obj for dl in _loaders(v)]
    return []

