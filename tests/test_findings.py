"""Findings are what is true of a run: real-life forms of each violation (no injection) are
found with evidence, a clean run has none, and observing never changes the run."""
from __future__ import annotations

import pytest
import torch

import nora
from nora.replaying import replay
from nora.trainers.data import BatchIndexDataset
from nora.violations import names
from tests.conftest import slow_loader_worker

LOOK = ("modes=norm_aware", "regime=exploratory")


def _found(result: nora.RunResult) -> set[str]:
    return {f["violation"] for f in result.findings}


def test_seed_null_is_a_real_missing_seed(run_case):
    a, b = (run_case("modes=pipeline", "seed=null") for _ in range(2))
    assert a.fingerprint != b.fingerprint  # generators really start from OS entropy
    for r in (a, b):
        assert replay(r.run_dir).reproducible  # the drawn seed is recorded
    seen = run_case(*LOOK, "seed=null")
    assert _found(seen) == {"missing_seed"} and seen.false_positives == 0
    finding = seen.findings[0]
    assert finding["source"] == "present" and finding["false_positive"] is False
    assert finding["evidence"]["source"] == "entropy" and "global" in finding["evidence"]["streams"]
    assert seen.outcome == seen.expected_outcome == "logged"


def test_a_clean_run_has_no_findings(run_case):
    r = run_case("modes=norm_aware", "regime=strict")
    assert r.findings == [] and r.outcome == "clean" and r.false_positives == 0


def test_determinism_off_in_the_config_is_found(run_case):
    r = run_case(*LOOK, "repro.deterministic=false")
    assert _found(r) == {"nondeterminism_enabled"} and r.false_positives == 0
    assert "deterministic_algorithms" in r.findings[0]["evidence"]["nondeterministic"]


@pytest.mark.parametrize("violation", [v for v in names() if v != "none"])
def test_observing_never_changes_the_run(run_case, violation):
    """Exploratory (every detector watching) is bit-identical to pipeline (none watching), and the
    only finding is the injected violation: no detector fires on another's injection."""
    with slow_loader_worker(BatchIndexDataset, 1):
        seen = run_case(*LOOK, f"violation={violation}")
        if violation == "missing_seed":  # entropy differs per run: replay its recorded seed
            verdict = replay(seen.run_dir)
            assert verdict.reproducible, verdict.message
        else:
            assert run_case("modes=pipeline", f"violation={violation}").fingerprint == \
                seen.fingerprint
    assert _found(seen) == {violation}
    assert all(f["source"] == "injected" for f in seen.findings)


def _user_trainer(tmp_path, monkeypatch, body: str) -> str:
    name = "user_bugs_" + "".join(c if c.isalnum() else "_" for c in tmp_path.name)
    mod = tmp_path / f"{name}.py"
    mod.write_text("from nora.trainers.supervised import SupervisedTrainer\n\n"
                   f"class Buggy(SupervisedTrainer):\n{body}")
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"trainer={name}:Buggy"


def test_a_trainer_that_forgets_eval_mode_is_found(run_case, tmp_path, monkeypatch):
    body = ("    def evaluate(self, *, record=True):\n"
            "        with self.ctx.evaluating(self.model):\n"
            "            self.model.train()  # the bug: as self.train() in validation_step\n"
            "            x = self.ctx.eval_input(self.x_test, self.model)\n"
            "            logits = self.model(x).float()\n"
            "        m = {'loss': float(logits.logsumexp(1).mean())}\n"
            "        if record:\n"
            "            self.ctx.record_eval(m)\n"
            "        return m\n")
    r = run_case(*LOOK, _user_trainer(tmp_path, monkeypatch, body))
    assert _found(r) == {"eval_mode_bug"}
    ev = r.findings[0]["evidence"]
    assert set(ev["active_stochastic_modules"]) == {"BatchNorm2d", "Dropout"}
    assert r.findings[0]["false_positive"] is None  # a user's code: real, not counted


def test_a_bare_model_checkpoint_is_found_from_its_contents(run_case, tmp_path, monkeypatch):
    body = ("    def _state(self):\n"
            "        return {'model': self.model.state_dict(), 'position': self.position}\n")
    r = run_case(*LOOK, _user_trainer(tmp_path, monkeypatch, body))
    assert _found(r) == {"checkpoint_incomplete"}
    missing = r.findings[0]["evidence"]["missing"]
    assert {"optimizer state", "scheduler position", "rng.torch", "rng.numpy"} <= set(missing)


def test_a_random_eval_transform_is_found_without_touching_training(run_case, tmp_path,
                                                                    monkeypatch):
    body = ("    def __init__(self, ctx):\n"
            "        super().__init__(ctx)\n"
            "        ctx.evaluation.custom = lambda x, g: x + 0.1 * __import__('torch')"
            ".randn(x.shape, generator=g)\n"
            "        ctx.evaluation.custom_generator = ctx.generator('eval_noise')\n")
    spec = _user_trainer(tmp_path, monkeypatch, body)
    seen, piped = run_case(*LOOK, spec), run_case("modes=pipeline", spec)
    assert _found(seen) == {"aug_leak"} and seen.fingerprint == piped.fingerprint


def test_an_lr_edited_by_hand_is_found_in_any_param_group(run_case, tmp_path, monkeypatch):
    body = ("    def _train_step(self, x, y):\n"
            "        if self.ctx.step == 2:\n"
            "            self.optimizer.param_groups[0]['lr'] *= 0.5  # by hand, no record\n"
            "        return super()._train_step(x, y)\n")
    r = run_case(*LOOK, _user_trainer(tmp_path, monkeypatch, body))
    assert _found(r) == {"untracked_config_change"}
    assert r.findings[0]["step"] == 2
    assert r.findings[0]["evidence"]["param_groups"][0]["param_group"] == 0


def test_fixes_are_validated_by_measurement(run_case):
    r = run_case("modes=norm_aware", "regime=balanced", "violation=eval_mode_bug")
    assert r.outcome == "fixed" and r.metrics["eval_repeatable"] is True
    assert torch.isfinite(torch.tensor(r.losses)).all()


def test_fp16_with_a_hand_made_loss_scale_is_found(run_case, tmp_path, monkeypatch):
    body = ("    def __init__(self, ctx):\n"
            "        super().__init__(ctx)\n"
            "        ctx.precision.drop_scaler(1e6)  # fp16, a fixed scale too big, no GradScaler\n")
    r = run_case(*LOOK, _user_trainer(tmp_path, monkeypatch, body))
    assert _found(r) == {"amp_nan"}
    assert r.findings[0]["evidence"]["grad_scaler"] is False
