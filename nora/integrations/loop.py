"""NORA for a hand-written training loop: a monitor whose calls sit where a loop already logs.

```python
with LoopMonitor(seed=0, run_dir="runs/mine") as mon:
    loader = mon.loader(train_loader)            # its position goes into checkpoints
    for x, y in loader:
        loss = loss_fn(model(x), y)
        loss.backward()
        if mon.should_step(loss, model):         # non-finite loss or gradients
            optimizer.step()
        optimizer.zero_grad()
        mon.after_step(loss, model, optimizer, batch=(x, y))
        with mon.evaluating(model):              # eval mode enforced / checked
            ...
        mon.checkpoint(path, {"model": ..., "optimizer": ...})
```

It writes the same run directory as the framework callbacks (so ``nora compare`` and
``nora.check_resume`` work on the loop) and applies the regime to what it reads: the seed,
torch's switches, LRs that change without the scheduler, non-finite losses and gradients,
stochastic modules left in train mode during evaluation, and each checkpoint's contents
(``balanced`` adds the missing RNG states and the loader position, and ``resume`` restores
them).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from nora.analysis.ckpt_audit import audit_state, describe
from nora.checkpoint import save_checkpoint
from nora.errors import NormViolationError
from nora.integrations import detect
from nora.integrations.position import ResumableSampler, make_resumable
from nora.integrations.recorder import MonitorResult, Recorder
from nora.integrations.rng import capture_rng, restore_rng

__all__ = ["LoopMonitor"]

_TORCH_DEFAULT_SEED = 67280421310721   # torch's CPU generator before anyone seeds it
_KEY = "nora"


class LoopMonitor:
    """Records and detectors for a loop NORA did not write.

    Args:
        seed: the seed the loop set (None: NORA checks whether torch was seeded at all).
        mode, regime, run_dir, hash_every: as for the framework callbacks.
        scheduler: the LR scheduler, whose LRs explain LR changes.
    """

    def __init__(self, *, seed: int | None = None, mode: str = "norm_aware",
                 regime: str = "balanced", run_dir: str | Path | None = None,
                 hash_every: int = 10, scheduler: Any = None) -> None:
        self.rec = Recorder("loop", mode=mode, regime=regime, run_dir=run_dir,
                            hash_every=hash_every)
        self.seed, self.scheduler = seed, scheduler
        self.step = 0
        self.result: MonitorResult | None = None
        self._sampler: ResumableSampler | None = None
        self._lrs: list[float] | None = None
        self._accepted: tuple[list[float], list[float]] | None = None
        self._model: torch.nn.Module | None = None

    @property
    def run_dir(self) -> Path:
        return self.rec.run_dir

    # ------------------------------------------------------------------ start / end
    def __enter__(self) -> LoopMonitor:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.rec.finished:
            return
        status = ("done" if exc is None else
                  "halted" if isinstance(exc, NormViolationError) else "failed")
        self.finish(status=status)

    def start(self) -> None:
        """Write the manifest; check the seed and torch's switches."""
        initial = torch.initial_seed()
        self.rec.start(seeds={"seed": self.seed, "torch_initial_seed": initial},
                       determinism=detect.determinism())
        if self.seed is None and initial == _TORCH_DEFAULT_SEED:
            self.rec.found("missing_seed", event="startup", step=0,
                           evidence={"seed": None, "torch_initial_seed": initial},
                           message="nothing was seeded: torch runs on its built-in default "
                                   "seed, numpy and python on OS entropy",
                           hint="call nora.seed_everything(seed) first and pass seed=",
                           fix=self._fix_seed)
        problems = detect.determinism_problems(detect.determinism(),
                                               cuda=torch.cuda.is_available())
        if problems:
            self.rec.found("nondeterminism_enabled", event="startup", step=0,
                           evidence={"problems": problems, **detect.determinism()},
                           message="; ".join(problems),
                           hint="nora.seed_everything(seed, deterministic=True)",
                           fix=detect.fix_determinism)

    def _fix_seed(self) -> bool:
        from nora.seeding import seed_everything
        seed_everything(42, deterministic=torch.are_deterministic_algorithms_enabled())
        self.rec.record_change("seed", None, 42, step=0, source="agent:seed")
        return torch.initial_seed() == 42

    def finish(self, state: dict[str, Any] | None = None, *, status: str = "done"
               ) -> MonitorResult:
        """Write the final state (default: the last model's state dict) and the norms files."""
        if state is None and self._model is not None:
            state = {k: v.detach().cpu() for k, v in self._model.state_dict().items()}
        self.result = self.rec.finish(state, status=status, steps=self.step)
        return self.result

    # ------------------------------------------------------------------ steps
    def loader(self, loader: torch.utils.data.DataLoader) -> torch.utils.data.DataLoader:
        """Make ``loader``'s position part of every checkpoint (the same loader, same order)."""
        self._sampler = make_resumable(loader)
        return loader

    def should_step(self, loss: torch.Tensor, model: torch.nn.Module) -> bool:
        """Call before ``optimizer.step()``: False when the step must be skipped (balanced,
        non-finite loss or gradients); strict halts; exploratory lets it through."""
        bad = detect.nonfinite_grads(model)
        finite = bool(torch.isfinite(loss.detach()).all())
        if finite and not bad:
            return True
        action = self.rec.found(
            "amp_nan", event="step", step=self.step + 1,
            evidence={"loss_finite": finite, "nonfinite_grads": bad[:8]},
            message="a non-finite loss or gradients before the optimizer step",
            hint="use a GradScaler with fp16 (or bf16), lower the LR",
            fix=lambda: _drop_grads(model), key="step")
        return action not in ("auto_fix", None) or self.rec.regime != "balanced"

    def after_step(self, loss: Any, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   *, batch: Any = None) -> None:
        """Call after ``optimizer.step()``: one step record, LR and loader bookkeeping."""
        self.step += 1
        self._model = model
        if self._sampler is not None:
            self._sampler.consumed += 1
        lrs = detect.lrs(optimizer)
        expected = (list(self.scheduler.get_last_lr()) if self.scheduler is not None
                    else self._lrs)
        if expected is not None and lrs != expected and self._accepted != (expected, lrs):
            self._accepted = (expected, lrs)           # one finding per change
            self.rec.found("untracked_config_change", event="step", step=self.step,
                           evidence={"expected": expected, "actual": lrs},
                           message=f"the LR changed to {lrs} where {expected} was expected, "
                                   "and no scheduler or recorded change explains it",
                           hint="change LRs through a scheduler (pass it as scheduler=)",
                           fix=lambda: self._track(expected, lrs), key=f"{self.step}")
        self._lrs = lrs
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else loss
        self.rec.step(self.step, loss=value, batch=batch, lrs=lrs, params=model)

    def _track(self, old: list[float], new: list[float]) -> bool:
        self.rec.record_change("optimizer.lr", old, new, step=self.step, source="untracked")
        return True

    @contextmanager
    def evaluating(self, model: torch.nn.Module) -> Iterator[None]:
        """Around evaluation: every forward inside is checked for train-mode dropout /
        batch-norm (balanced switches the model to eval first); the mode is restored after."""
        was_training = model.training

        def pre_forward(module: torch.nn.Module, args: Any) -> None:
            stochastic = detect.stochastic_in_train(module)
            if stochastic:
                self.rec.found("eval_mode_bug", event="eval", step=self.step,
                               evidence={"stochastic_in_train": stochastic[:8]},
                               message="evaluation runs with dropout / batch-norm in train "
                                       "mode: evals differ and statistics drift",
                               hint="call model.eval() before evaluating",
                               fix=lambda: not detect.stochastic_in_train(module.eval()),
                               key="eval")

        handle = model.register_forward_pre_hook(pre_forward)
        try:
            with torch.no_grad():
                yield
        finally:
            handle.remove()
            model.train(was_training)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, path: str | Path, state: dict[str, Any]) -> Path:
        """Audit ``state`` (balanced completes it) and write it atomically."""
        state = dict(state)
        audit = audit_state(state, expect_scheduler=self.scheduler is not None)
        missing = [p for p in audit["missing"] if p != "position" or self._sampler is not None]
        if missing:
            def fix() -> bool:
                state[_KEY] = {"rng": capture_rng(), "step": self.step,
                               "loader": self._sampler.state_dict() if self._sampler else None}
                left = audit_state(state, expect_scheduler=self.scheduler is not None)
                return not [p for p in left["missing"]
                            if p in ("rng", "position") and p in missing]

            self.rec.found("checkpoint_incomplete", event="checkpoint", step=self.step,
                           evidence={"missing": missing, "details": audit["details"]},
                           message=f"{describe(audit)}: a resume cannot match the "
                                   "uninterrupted run", hint="save the optimizer's and "
                           "scheduler's state_dicts; NORA adds the RNG and loader state",
                           fix=fix, key="save")
        save_checkpoint(state, path)
        return Path(path)

    def resume(self, state: dict[str, Any]) -> dict[str, Any]:
        """After loading a checkpoint: restore NORA's RNG states and loader position."""
        stash = state.get(_KEY)
        if stash is None:
            return state
        self.step = int(stash["step"])
        restore_rng(stash["rng"])
        if self._sampler is not None and stash.get("loader"):
            self._sampler.load_state_dict(stash["loader"], rng_after=stash["rng"]["torch"])
        return state


def _drop_grads(model: torch.nn.Module) -> bool:
    for p in model.parameters():
        p.grad = None
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())
