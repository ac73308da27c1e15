"""The plain-loop monitor on a hand-written loop: records, each detector on the real-life
form of its violation, the regimes, and resume through ``check_resume``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nora
from nora.analysis.resume import check_resume
from nora.checkpoint import load_checkpoint
from nora.errors import ConfigError, NoraError
from nora.integrations.loop import LoopMonitor
from nora.records import read_json, read_jsonl


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)                   # the data, not the run
    x, y = torch.randn(96, 8, generator=g), torch.randint(0, 3, (96,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)   # 6 batches


def loop_train(seed: int | None, *, stop_at: int | None = None, resume_from: str | None = None,
               checkpoint_dir: str = ".", regime: str | None = "balanced", total: int = 9,
               forget_eval: bool = False, edit_lr_at: int | None = None,
               bare_checkpoint: bool = False, blow_up: bool = False) -> dict[str, Any]:
    """A user's loop with dropout and a shuffling loader; ``regime`` None: no monitor."""
    if seed is not None:
        nora.seed_everything(seed)
    else:                   # what a process that never seeded has (tests share one process)
        torch.manual_seed(67280421310721)
    model, loader = _model(), _loader()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    mon = LoopMonitor(seed=seed, regime=regime or "exploratory", mode="norm_aware"
                      if regime else "pipeline", run_dir=Path(checkpoint_dir, "nora_run"))
    with mon:
        loader = mon.loader(loader)
        if resume_from:
            state = load_checkpoint(resume_from)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            mon.step = state["step"]
            mon.resume(state)
        while mon.step < (stop_at or total):
            for x, y in loader:
                loss = nn.functional.cross_entropy(model(x * (1e39 if blow_up else 1)), y)
                loss.backward()
                if mon.should_step(loss, model):
                    opt.step()
                opt.zero_grad()
                if edit_lr_at is not None and mon.step + 1 == edit_lr_at:
                    opt.param_groups[0]["lr"] = 0.5
                mon.after_step(loss, model, opt, batch=(x, y))
                if mon.step % 4 == 0:
                    with mon.evaluating(model):
                        if not forget_eval:
                            model.eval()
                        model(x)
                if mon.step == stop_at:
                    state = ({"model": model.state_dict()} if bare_checkpoint else
                             {"model": model.state_dict(), "optimizer": opt.state_dict(),
                              "step": mon.step})
                    mon.checkpoint(Path(checkpoint_dir, "stop.pt"), state)
                    break
                if mon.step == total:
                    break
    return {"model": model.state_dict(), "optimizer": opt.state_dict()}


def _findings(run: Path) -> list[dict[str, Any]]:
    return read_json(run / "norms" / "reproducibility_metrics.json")["findings"]


def test_clean_loop_has_no_findings_and_the_monitor_changes_nothing(tmp_path):
    watched = loop_train(3, checkpoint_dir=str(tmp_path))
    plain = loop_train(3, regime=None, checkpoint_dir=str(tmp_path / "p"))
    assert nora.fingerprint(watched) == nora.fingerprint(plain)
    run = tmp_path / "nora_run"
    assert _findings(run) == []
    steps = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in steps] == list(range(1, 10))
    assert all(len(r["batch_hash"]) == 16 and r["lrs"] == [0.01] for r in steps)
    assert read_json(run / "manifest.json")["outcome"] == "clean"


@pytest.mark.parametrize("stop_at", [4, 6], ids=["mid_epoch", "epoch_boundary"])
def test_balanced_resume_is_bit_identical(stop_at):
    verdict = check_resume(loop_train, seed=3, stop_at=stop_at, isolation="inprocess")
    assert verdict.identical, verdict.report()


@pytest.mark.parametrize("isolation", ["inprocess", pytest.param("process",
                                                                  marks=pytest.mark.slow)])
def test_resume_without_nora_state_names_it(isolation):
    verdict = check_resume(loop_train, seed=3, stop_at=4, kwargs={"regime": None},
                           isolation=isolation)
    assert not verdict.identical
    assert "no RNG state: torch, numpy, python" in verdict.cause
    assert "at step 5 the resumed run trained the batch of step 1 again" in verdict.cause
    assert verdict.report().splitlines()[-1].startswith("Hint:")


_CASES = {"missing_seed": {"seed": None}, "eval_mode_bug": {"forget_eval": True},
          "untracked_config_change": {"edit_lr_at": 3},
          "checkpoint_incomplete": {"stop_at": 5, "bare_checkpoint": True},
          "amp_nan": {"blow_up": True}}


@pytest.mark.parametrize("violation", list(_CASES))
@pytest.mark.parametrize("regime", ["strict", "balanced", "exploratory"])
def test_each_violation_per_regime(violation, regime, tmp_path):
    kw = dict({"seed": 3}, **_CASES[violation])
    if regime == "strict":
        with pytest.raises(nora.NormViolationError) as info:
            loop_train(checkpoint_dir=str(tmp_path), regime=regime, **kw)
        assert info.value.violation == violation
        assert read_json(tmp_path / "nora_run" / "manifest.json")["status"] == "halted"
        return
    out = loop_train(checkpoint_dir=str(tmp_path), regime=regime, **kw)
    findings = _findings(tmp_path / "nora_run")
    assert [f["violation"] for f in findings] == [violation]
    assert findings[0]["source"] == "present" and findings[0]["evidence"]
    decisions = read_jsonl(tmp_path / "nora_run" / "norms" / "agent_decisions.jsonl")
    assert {d["agent_action"] for d in decisions} == (
        {"auto_fix"} if regime == "balanced" else {"log"})
    if violation == "amp_nan":                 # measured: skipped steps keep weights finite
        finite = all(bool(torch.isfinite(t).all()) for t in out["model"].values())
        assert finite is (regime == "balanced")


def test_forgotten_eval_changes_evals_unless_balanced(tmp_path):
    """The effect, measured: two evaluations of one batch differ in train mode."""
    model = _model()
    x = torch.randn(4, 8)
    outs = {}
    for regime in ("exploratory", "balanced"):
        with LoopMonitor(seed=1, regime=regime, run_dir=tmp_path / regime) as mon:
            with mon.evaluating(model):
                outs[regime] = [model(x), model(x)]
    assert not torch.equal(*outs["exploratory"])
    assert torch.equal(*outs["balanced"])
    assert model.training                           # the mode is restored after evaluation


def test_compare_accepts_monitor_results(tmp_path):
    a = LoopMonitor(seed=1, run_dir=tmp_path / "a")
    b = LoopMonitor(seed=1, run_dir=tmp_path / "b")
    for mon, w in ((a, 1.0), (b, 2.0)):
        with mon:
            pass
        mon.finish({"w": torch.tensor([w])})
    verdict = nora.compare(a.result, b.result)
    assert not verdict.identical and verdict.divergent_tensors == ["w"]
    assert nora.compare(a.result, a.result).identical


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="regime='lenient'.*strict, balanced, exploratory"):
        LoopMonitor(regime="lenient")
    with pytest.raises(ConfigError, match="mode='watch'"):
        LoopMonitor(mode="watch")
    with pytest.raises(NoraError, match="stop_at must be an int >= 1, got 0"):
        check_resume(loop_train, seed=0, stop_at=0)
