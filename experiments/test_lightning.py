"""NORA's callback in a real Lightning fit: an MLP with dropout on the digits, a shuffling
DataLoader, Adam and StepLR, ``seed_everything(7, workers=True)``, ``deterministic=True``, CPU.

Resume (each run in a fresh process, ``nora.check_resume``): without the callback a fit
stopped mid-epoch (step 20 of a 29-batch epoch) or at the epoch boundary (step 29) and
resumed from ``trainer.save_checkpoint`` differs from the uninterrupted fit, and the verdict
names what the checkpoint lacks; with ``NoraCallback(regime="balanced")`` it is
bit-identical. Each violation is written the way a Lightning user writes it (no seed, an LR
edited in a callback, fp16 without scaling, ``self.train()`` in ``validation_step``, a
weights-only checkpoint) and handled per regime. Needs the ``lightning`` extra.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lightning")

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import nora  # noqa: E402
from nora.analysis.resume import check_resume  # noqa: E402
from nora.integrations.lightning import NoraCallback  # noqa: E402
from nora.records import read_json, read_jsonl  # noqa: E402

BATCHES, TOTAL = 29, 40      # the measured case: 928 digits in batches of 32, 40 steps


class DigitsMLP(pl.LightningModule):
    def __init__(self, *, train_in_val: bool = False, overflow: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.2),
                                 nn.Linear(64, 10))
        self.train_in_val, self.overflow = train_in_val, overflow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 3e4 if self.overflow else x)     # fp16 overflows at 65504

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        if self.train_in_val:
            self.train()                    # the bug: dropout on during evaluation
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=1e-2)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, 10, 0.5)]


class EditLR(pl.Callback):
    """A user's callback that edits the LR behind the scheduler's back."""

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == 3:
            trainer.optimizers[0].param_groups[0]["lr"] = 0.5


def _data(n: int) -> TensorDataset:
    from nora.trainers.data import _digits_arrays
    x, y = _digits_arrays()
    return TensorDataset(torch.tensor(x[:n] / 16.0, dtype=torch.float32), torch.tensor(y[:n]))


def lightning_fit(seed: int | None, *, stop_at: int | None = None,
                  resume_from: str | None = None, checkpoint_dir: str = ".",
                  regime: str | None = None, total: int = 12, batches: int = 8,
                  seeded: bool = True,
                  weights_only: bool = False, validate: bool = False, edit_lr: bool = False,
                  precision: str = "32-true", extra_callbacks: tuple = (),
                  model_checkpoint: bool = False,
                  **module: Any) -> dict[str, Any]:
    """The user's fit. ``regime`` None: no NoraCallback. Its run directory goes under
    ``checkpoint_dir``, so ``check_resume`` can read the records."""
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    if seeded:
        pl.seed_everything(seed, workers=True, verbose=False)
    else:                           # what a fresh process that never seeded has
        os.environ.pop("PL_GLOBAL_SEED", None)
        os.environ.pop("PL_SEED_WORKERS", None)
    model = DigitsMLP(**module)
    loader = DataLoader(_data(batches * 32), batch_size=32, shuffle=True)
    callbacks: list[pl.Callback] = [*extra_callbacks, *([EditLR()] if edit_lr else [])]
    if stop_at and model_checkpoint:        # the save happens inside the fit, at stop_at
        callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=checkpoint_dir, save_top_k=-1,
                                                      every_n_train_steps=stop_at))
    nora_cb = None
    if regime is not None:
        nora_cb = NoraCallback(regime=regime, run_dir=Path(checkpoint_dir, "nora_run"))
        callbacks.insert(0, nora_cb)
    trainer = pl.Trainer(max_steps=stop_at or total, deterministic=True, accelerator="cpu",
                         logger=False, enable_checkpointing=bool(stop_at and model_checkpoint),
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=callbacks, precision=precision,
                         limit_val_batches=2 if validate else 0, num_sanity_val_steps=0,
                         val_check_interval=5 if validate else None)
    val = DataLoader(_data(64), batch_size=32) if validate else None
    trainer.fit(model, loader, val, ckpt_path=resume_from)
    if stop_at and not model_checkpoint:
        trainer.save_checkpoint(os.path.join(checkpoint_dir, "stop.ckpt"),
                                weights_only=weights_only)
    out = {"model": model.state_dict(), "optimizer": trainer.optimizers[0].state_dict()}
    if nora_cb is not None and nora_cb.result is not None:
        out["fingerprint"] = nora_cb.result.fingerprint
    return out


def _findings(run_dir: Path) -> list[dict[str, Any]]:
    return read_json(run_dir / "norms" / "reproducibility_metrics.json")["findings"]


# ---------------------------------------------------------------------- resume
# Default suite: 8-batch epochs, stopped mid-epoch (5) or at the boundary (8), resumed in
# this process. Slow: the measured case, 29-batch epochs stopped at 20 or 29, fresh processes.
_SMALL = {"mid_epoch": (5, 8), "epoch_boundary": (8, 8)}
_MEASURED = {"mid_epoch": (20, BATCHES), "epoch_boundary": (BATCHES, BATCHES)}


def _check(where: str, regime: str | None, isolation: str) -> Any:
    stop, batches = (_SMALL if isolation == "inprocess" else _MEASURED)[where]
    total = 12 if isolation == "inprocess" else TOTAL
    return check_resume(lightning_fit, seed=7, stop_at=stop, isolation=isolation,
                        kwargs={"regime": regime, "batches": batches, "total": total})


def _assert_names_missing_state(verdict: Any) -> None:
    assert not verdict.identical
    report = verdict.report()
    assert "no RNG state: torch, numpy, python" in report
    assert "no data-loader position" in report
    assert report.splitlines()[-1].startswith("Hint:")


@pytest.mark.parametrize("where", list(_SMALL))
def test_resume_without_callback_differs_and_names_missing_state(where):
    _assert_names_missing_state(_check(where, None, "inprocess"))


@pytest.mark.parametrize("where", list(_SMALL))
def test_resume_with_balanced_callback_is_bit_identical(where, nora_record):
    verdict = _check(where, "balanced", "inprocess")
    nora_record.verdict(f"lightning_balanced_resume_{where}", verdict.identical, verdict.cause)
    assert verdict.identical, verdict.report()


def test_resume_from_model_checkpoint_callback_is_bit_identical():
    """The other route: ModelCheckpoint(every_n_train_steps) saves inside the fit."""
    verdict = check_resume(lightning_fit, seed=7, stop_at=5, isolation="inprocess",
                           kwargs={"regime": "balanced", "model_checkpoint": True})
    assert verdict.identical, verdict.report()


def test_exploratory_resume_records_name_the_repeated_batch():
    verdict = _check("epoch_boundary", "exploratory", "inprocess")
    assert not verdict.identical
    assert "the data position was not restored" in verdict.cause
    assert "again" in verdict.cause          # Lightning trains an earlier batch a second time


@pytest.mark.slow
@pytest.mark.parametrize("where", list(_MEASURED))
def test_fresh_process_resume_measured_case(where, nora_record):
    """The measured case in fresh processes: plain Lightning differs (and NORA names the
    missing state), exploratory's records name the batch, balanced is bit-identical."""
    _assert_names_missing_state(_check(where, None, "process"))
    explored = _check(where, "exploratory", "process")
    assert "the data position was not restored" in explored.cause
    verdict = _check(where, "balanced", "process")
    nora_record.verdict(f"lightning_fresh_process_resume_{where}", verdict.identical,
                        verdict.cause)
    assert verdict.identical, verdict.report()


# ---------------------------------------------------------------------- clean runs
def test_callback_changes_no_number_and_finds_nothing(tmp_path):
    plain = lightning_fit(7, total=12)
    watched = lightning_fit(7, total=12, regime="balanced", checkpoint_dir=str(tmp_path))
    assert nora.fingerprint(plain["model"]) == nora.fingerprint(watched["model"])
    assert nora.fingerprint(plain["optimizer"]) == nora.fingerprint(watched["optimizer"])
    assert _findings(tmp_path / "nora_run") == []
    steps = read_jsonl(tmp_path / "nora_run" / "metrics.jsonl")
    assert [r["step"] for r in steps] == list(range(1, 13))       # 12 steps, 1.5 epochs
    assert all(len(r["batch_hash"]) == 16 and "loss_bits" in r for r in steps)
    assert [r["step"] for r in steps if "param_hash" in r] == [10]
    manifest = read_json(tmp_path / "nora_run" / "manifest.json")
    assert manifest["status"] == "done" and manifest["outcome"] == "clean"
    assert manifest["fingerprint"] == watched["fingerprint"]


# ---------------------------------------------------------------------- violations
_CASES = {   # violation -> how a Lightning user writes it
    "missing_seed": {"seeded": False},
    "untracked_config_change": {"edit_lr": True},
    "amp_nan": {"precision": "16-true", "overflow": True},
    "eval_mode_bug": {"validate": True, "train_in_val": True},
}


@pytest.mark.parametrize("violation", list(_CASES))
def test_strict_halts_on_each_violation(violation, tmp_path):
    with pytest.raises(nora.NormViolationError) as info:
        lightning_fit(7, total=8, regime="strict", checkpoint_dir=str(tmp_path),
                      **_CASES[violation])
    assert info.value.violation == violation
    assert "Hint:" in str(info.value)
    findings = _findings(tmp_path / "nora_run")
    assert [f["violation"] for f in findings] == [violation]
    assert findings[0]["source"] == "present" and not findings[0]["false_positive"]


@pytest.mark.parametrize("regime", ["balanced",
                                    pytest.param("exploratory", marks=pytest.mark.slow)])
@pytest.mark.parametrize("violation", list(_CASES))
def test_balanced_fixes_and_exploratory_logs(violation, regime, tmp_path):
    out = lightning_fit(7, total=8, regime=regime, checkpoint_dir=str(tmp_path),
                        **_CASES[violation])
    run = tmp_path / "nora_run"
    assert violation in {f["violation"] for f in _findings(run)}
    actions = {d["agent_action"] for d in read_jsonl(run / "norms" / "agent_decisions.jsonl")
               if d["violation_name"] == violation}
    assert actions == ({"auto_fix"} if regime == "balanced" else {"log"})
    weights_finite = all(bool(torch.isfinite(t).all()) for t in out["model"].values())
    if violation == "amp_nan":          # the measured effect, and the fix's
        assert weights_finite is (regime == "balanced")
    if violation == "untracked_config_change" and regime == "balanced":
        changes = read_json(run / "manifest.json")["config_changes"]
        assert changes and changes[0]["new"] == 0.5 and changes[0]["source"] == "untracked"


def test_eval_mode_guard_keeps_validation_in_eval_mode(tmp_path):
    modes = {}
    for regime in ("balanced", "exploratory"):
        probe = _ModeProbe()
        lightning_fit(7, total=6, regime=regime, checkpoint_dir=str(tmp_path / regime),
                      validate=True, train_in_val=True, extra_callbacks=[probe])
        modes[regime] = probe.dropout_training
    assert modes["balanced"] and not any(modes["balanced"])
    assert modes["exploratory"] and all(modes["exploratory"])


class _ModeProbe(pl.Callback):
    """Reads the dropout module's mode after each validation step ran."""

    def __init__(self) -> None:
        self.dropout_training: list[bool] = []

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                *args: Any) -> None:
        self.dropout_training.append(pl_module.net[3].training)


def test_weights_only_checkpoint(tmp_path):
    """A checkpoint without optimizer state: strict refuses to write it; balanced completes it
    and the resume is bit-identical."""
    with pytest.raises(nora.NormViolationError, match="optimizer"):
        lightning_fit(7, stop_at=5, regime="strict", weights_only=True,
                      checkpoint_dir=str(tmp_path))
    assert not (tmp_path / "stop.ckpt").exists()
    verdict = check_resume(lightning_fit, seed=7, stop_at=5, isolation="inprocess",
                           kwargs={"regime": "balanced", "weights_only": True, "total": 9})
    assert verdict.identical, verdict.report()
