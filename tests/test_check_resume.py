"""``nora.check_resume`` on NORA's own trainers: a full checkpoint resumes bit-identical in a
fresh process; one without optimizer state does not, and the verdict says so."""
from __future__ import annotations

from pathlib import Path

import nora

SMALL = ["modes=pipeline", "train.epochs=2"]


def _train(seed: int, extra: list[str], *, stop_at: int | None, resume_from: str | None,
           checkpoint_dir: str) -> dict:
    overrides = [*SMALL, *extra, f"seed={seed}"]
    if stop_at is not None:
        overrides.append(f"train.max_steps={stop_at}")
    if resume_from is not None:
        overrides.append(f"resume_from={resume_from}")
    result = nora.train(nora.load_config(overrides), run_dir=Path(checkpoint_dir) / "run")
    return result.state


def supervised(seed, **kw):
    return _train(seed, ["trainer.train_subset=256"], **kw)


def ppo(seed, **kw):
    return _train(seed, ["trainer=ppo", "train.epochs=4", "train.checkpoint_every=1",
                         "trainer.num_steps=32", "trainer.eval_episodes=1"], **kw)


def without_optimizer_state(seed, **kw):
    return _train(seed, ["trainer.train_subset=256", "violation=checkpoint_incomplete"], **kw)


def test_both_trainers_resume_bit_identical_in_a_fresh_process():
    assert nora.check_resume(supervised, seed=1, stop_at=5).identical
    assert nora.check_resume(ppo, seed=1, stop_at=2, isolation="inprocess").identical


def test_a_checkpoint_without_optimizer_state_is_named():
    verdict = nora.check_resume(without_optimizer_state, seed=1, stop_at=5,
                                isolation="inprocess")
    assert not verdict.identical
    report = verdict.report()
    assert "optimizer" in report and "Hint:" in report, report
