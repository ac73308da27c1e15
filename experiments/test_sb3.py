"""NORA's callback in a real stable-baselines3 learn: PPO on CartPole-v1, CPU.

Resume (``nora.check_resume``, fresh processes): ``model.save`` at the stop, then in a new
process ``PPO.load(path, env=...)`` and ``learn(rest, reset_num_timesteps=False)``. Without
NORA the continued learn differs from the uninterrupted one (``load`` re-seeds and resets
the env; the zip holds neither RNG nor env state) and the verdict names both; with
``NoraCallback(regime="balanced")`` in both learns it is bit-identical. PPO at 1 vs 2 torch
threads: environment sensitivity that starts in the initial weights (``orthogonal_`` goes
through a QR), reported by ``check_environment``. Needs the ``sb3`` extra.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("stable_baselines3")

import torch  # noqa: E402

import nora  # noqa: E402
from nora.analysis.environment import check_environment  # noqa: E402
from nora.analysis.resume import check_resume  # noqa: E402
from nora.records import read_json, read_jsonl  # noqa: E402

N_STEPS = 64


def _ppo(seed: int | None, **kw: Any) -> Any:
    import gymnasium as gym
    from stable_baselines3 import PPO
    return PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=N_STEPS, batch_size=N_STEPS,
               n_epochs=2, policy_kwargs={"net_arch": [16]}, seed=seed, device="cpu",
               verbose=0, **kw)


def _state(model: Any) -> dict[str, Any]:
    return {"policy": model.policy.state_dict(),
            "optimizer": model.policy.optimizer.state_dict()}


def sb3_learn(seed: int | None, *, stop_at: int | None = None, resume_from: str | None = None,
              checkpoint_dir: str = ".", regime: str | None = None, total: int = 4 * N_STEPS,
              **ppo: Any) -> dict[str, Any]:
    """The user's learn; ``stop_at`` and ``total`` count env steps. ``regime`` None: no
    NORA. Its run directory goes under ``checkpoint_dir`` for ``check_resume``'s records."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    from nora.integrations.sb3 import NoraCallback
    cb = (NoraCallback(regime=regime, run_dir=Path(checkpoint_dir, "nora_run"))
          if regime else None)
    if resume_from:
        model = PPO.load(resume_from, env=gym.make("CartPole-v1"), device="cpu")
        model.learn(total - model.num_timesteps, reset_num_timesteps=False, callback=cb)
        return _state(model)
    model = _ppo(seed, **ppo)
    model.learn(stop_at or total, callback=cb)
    if stop_at:
        model.save(os.path.join(checkpoint_dir, "stop.zip"))
    return _state(model)


def sb3_initial(seed: int) -> dict[str, Any]:
    """The default PPO policy (64x64) as built, and after one short learn."""
    import gymnasium as gym
    from stable_baselines3 import PPO
    model = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=N_STEPS, batch_size=N_STEPS,
                n_epochs=1, seed=seed, device="cpu")
    initial = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(N_STEPS)
    return {"initial_weights": initial, "trained": model.policy.state_dict()}


def _findings(run: Path) -> list[dict[str, Any]]:
    return read_json(run / "norms" / "reproducibility_metrics.json")["findings"]


# ---------------------------------------------------------------------- resume
def _check(regime: str | None, isolation: str) -> Any:
    return check_resume(sb3_learn, seed=0, stop_at=2 * N_STEPS, isolation=isolation,
                        kwargs={"regime": regime})


def _assert_names_what_save_drops(verdict: Any) -> None:
    assert not verdict.identical
    report = verdict.report()
    assert "no RNG state: torch, numpy, python" in report
    assert "no environment state" in report
    assert report.splitlines()[-1].startswith("Hint:")


def test_plain_save_load_differs_and_names_what_save_drops():
    _assert_names_what_save_drops(_check(None, "inprocess"))


def test_balanced_callback_makes_continued_learn_bit_identical(nora_record):
    verdict = _check("balanced", "inprocess")
    nora_record.verdict("sb3_balanced_resume_identical", verdict.identical, verdict.cause)
    assert verdict.identical, verdict.report()


@pytest.mark.slow
def test_fresh_process_save_load(nora_record):
    """Each learn in a fresh interpreter: plain differs, balanced is bit-identical."""
    _assert_names_what_save_drops(_check(None, "process"))
    verdict = _check("balanced", "process")
    nora_record.verdict("sb3_fresh_process_resume_identical", verdict.identical, verdict.cause)
    assert verdict.identical, verdict.report()


def test_exploratory_continued_learn_is_found(tmp_path):
    sb3_learn(0, stop_at=2 * N_STEPS, checkpoint_dir=str(tmp_path), regime="exploratory")
    out = tmp_path / "resumed"
    out.mkdir()
    sb3_learn(0, resume_from=str(tmp_path / "stop.zip"), checkpoint_dir=str(out),
              regime="exploratory")
    findings = _findings(out / "nora_run")
    assert [f["violation"] for f in findings] == ["checkpoint_incomplete"]
    assert "no RNG state" in findings[0]["message"] and "no env state" in findings[0]["message"]


# ---------------------------------------------------------------------- clean run, threads
def test_callback_changes_no_number_and_finds_nothing(tmp_path):
    plain = sb3_learn(0)
    watched = sb3_learn(0, regime="balanced", checkpoint_dir=str(tmp_path))
    assert nora.fingerprint(plain) == nora.fingerprint(watched)
    run = tmp_path / "nora_run"
    assert _findings(run) == []
    steps = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in steps] == [64, 128, 192, 256]    # one record per update
    assert all("rollout_hash" in r and "param_hash" in r for r in steps)
    assert read_json(run / "manifest.json")["env"]["torch_threads"] == torch.get_num_threads()


def test_thread_count_is_environment_sensitivity_from_the_initial_weights():
    report = check_environment(sb3_initial, seed=0, threads=(1, 2))
    assert report.reproducible and report.sensitive, report.report()
    finding = report.findings[0]
    assert finding["setting"] == "torch_threads"
    assert finding["divergent_tensors"][0].startswith("initial_weights.")
    assert "starts in initial_weights" in finding["message"]
    assert "not a bug in the function" in finding["message"]


# ---------------------------------------------------------------------- violations
class _ReplaceSchedule:
    """A user's callback that swaps the LR schedule mid-learn."""

    @staticmethod
    def make() -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        class Swap(BaseCallback):
            def _on_rollout_start(self) -> None:
                if self.model.num_timesteps == 2 * N_STEPS:
                    self.model.lr_schedule = lambda _: 1e-2

            def _on_step(self) -> bool:
                return True
        return Swap()


@pytest.mark.parametrize("regime", ["strict", "balanced", "exploratory"])
def test_missing_seed_and_schedule_change(regime, tmp_path):
    from stable_baselines3.common.callbacks import CallbackList

    from nora.integrations.sb3 import NoraCallback
    model = _ppo(None)
    cb = NoraCallback(regime=regime, run_dir=tmp_path / "run")
    if regime == "strict":
        with pytest.raises(nora.NormViolationError) as info:
            model.learn(3 * N_STEPS, callback=cb)
        assert info.value.violation == "missing_seed"
        return
    model.learn(3 * N_STEPS, callback=CallbackList([cb, _ReplaceSchedule.make()]))
    found = {f["violation"] for f in _findings(tmp_path / "run")}
    assert found == {"missing_seed", "untracked_config_change"}
    actions = {d["agent_action"] for d in cb.rec.decisions}
    assert actions == ({"auto_fix"} if regime == "balanced" else {"log"})
    if regime == "balanced":
        assert model.seed == 42
        keys = [c["key"] for c in read_json(tmp_path / "run" / "manifest.json")["config_changes"]]
        assert keys == ["seed", "lr_schedule"]
