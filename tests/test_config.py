from __future__ import annotations

import pydantic
import pytest

import nora
from nora.config import group_choices


def test_defaults_compose_from_presets_only():
    c = nora.load_config([])
    assert (c.mode.name, c.regime.name, c.violation.name, c.trainer.name) == (
        "norm_aware", "balanced", "none", "supervised")
    assert c.regime.auto_fix and c.regime.violation_tolerance == 1 and c.regime.max_retries == 3


@pytest.mark.parametrize("group", ["modes", "regime", "violation", "trainer"])
def test_every_preset_composes_and_validates(group):
    for choice in group_choices(group):
        nora.load_config([f"{group}={choice}"])


def test_regime_presets_match_the_design():
    strict = nora.load_config(["regime=strict"]).regime
    assert (strict.halt_on_violations, strict.auto_fix, strict.violation_tolerance,
            strict.max_retries) == (True, False, 0, 1)


def test_config_is_frozen():
    c = nora.load_config([])
    with pytest.raises(pydantic.ValidationError):
        c.seed = 3


@pytest.mark.parametrize("override, needles", [
    ("regime=foo", ["regime", "'foo'", "balanced, exploratory, strict"]),
    ("violation=typo", ["violation", "'typo'", "missing_seed"]),
    ("train.foo=1", ["train.foo", "'1'", "epochs"]),
    ("train.lr=abc", ["train.lr", "'abc'"]),
    ("train.epochs=-1", ["train.epochs", "-1", "greater than or equal to 1"]),
    ("train.lr_schedule=step", ["train.lr_schedule", "'step'", "'cosine'"]),
    ("device=gpu", ["device", "'gpu'", "cuda:N"]),
    ("seed", ["'seed'", "key=value"]),
])
def test_bad_input_names_key_value_and_choices(override, needles):
    with pytest.raises(nora.ConfigError) as info:
        nora.load_config([override])
    for needle in needles:
        assert needle in str(info.value)


def test_null_seed_and_trainer_switch():
    c = nora.load_config(["seed=null", "trainer=ppo"])
    assert c.seed is None and c.trainer.name == "ppo" and c.train.batch_size == 256


def test_ppo_does_not_silently_run_unsynchronised_ranks():
    with pytest.raises(nora.ConfigError, match="ddp.world_size=2 with trainer='ppo'"):
        nora.load_config(["trainer=ppo", "ddp.world_size=2"])
