"""The cached composition gives exactly Hydra's config, and a matrix case never calls Hydra."""
from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nora
from nora.hydra_train import expand as _expand
from nora.config import compose
from nora.config.compose import (check_overrides, compose_dict, compose_dict_hydra,
                                 group_choices)
from nora.config.presets import fast_compose

GROUPS = ["modes", "regime", "violation", "trainer"]
LEAVES = ["seed", "device", "resume_from", "train.lr", "train.epochs", "train.max_steps",
          "train.amp", "train.lr_schedule", "trainer.train_subset", "trainer.hidden",
          "trainer.env_id", "repro.torch_threads", "repro.deterministic", "ddp.world_size",
          "ddp.timeout_s", "violation.at_fraction", "violation.loss_scale", "mode.agent",
          "regime.max_retries", "mode.name", "durable"]
VALUES = ["0", "1", "-3", "42", "007", "-0", "+5", "12345678901234567890", "1_000", "1e-3", "-.5", "2.0", "1.0e+6", "inf", "-inf", "nan",
          "true", "False", "TRUE", "null", "NULL", "cpu", "cuda:0", "cosine", "abc",
          "'quoted'", '"double quoted"', "'42'", "a\\ b", "CartPole-v1", "int(3)",
          "float(2)", "str(5)", "[1,2]", "{a:1}", "${seed}", "${train.epochs}", "???", "",
          "0x10", "1.5e3", "  7  "]


def canon(data: object) -> str:
    """Comparable form (NaN equals NaN, key order ignored, int and float kept apart)."""
    return json.dumps(data, sort_keys=True, default=repr) + repr(
        sorted(_types(data)))


def _types(data: object, path: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        return [t for k, v in data.items() for t in _types(v, f"{path}.{k}")]
    return [(path, type(data).__name__)]


def _hydra(overrides: list[str]) -> dict:
    return compose_dict_hydra(check_overrides(overrides))   # the same up-front checks


def both(overrides: list[str]) -> tuple[str, str]:
    """Each path's result, or the error it raised (both must agree on success or failure)."""
    out = []
    for fn in (compose_dict, _hydra):
        try:
            out.append(canon(fn(overrides)))
        except nora.ConfigError:
            out.append("ConfigError")
    return out[0], out[1]


def test_every_group_option_composes_as_hydra_does():
    for group in GROUPS:
        for choice in group_choices(group):
            assert fast_compose([f"{group}={choice}"]) is not None
            fast, hydra = both([f"{group}={choice}"])
            assert fast == hydra, (group, choice)


overrides = st.one_of(
    st.builds(lambda g, c: f"{g}={c}", st.sampled_from(GROUPS),
              st.sampled_from(sorted({c for g in GROUPS for c in group_choices(g)}))),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(LEAVES), st.sampled_from(VALUES)),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(given=st.lists(overrides, max_size=6))
def test_any_override_list_composes_as_hydra_does(given):
    fast, hydra = both(given)
    assert fast == hydra, given


def test_sweeps_of_groups_and_nested_keys_compose_as_hydra_does():
    sweep = ["modes=pipeline,norm_aware", "regime=strict,exploratory",
             "violation=none,amp_nan", "train.lr=0.1,1e-3", "trainer.hidden=8,16",
             "seed=null,7"]
    jobs = _expand(sweep, multirun=True)
    assert len(jobs) == 64
    for job in jobs[::7]:
        assert fast_compose(job) is not None
        fast, hydra = both(job)
        assert fast == hydra, job


def test_plain_overrides_take_the_cached_path(monkeypatch):
    """A matrix case composes without Hydra (Hydra's 50-300 ms per case were most of
    NORA's own overhead); anything unusual still goes through Hydra."""
    nora.load_config([])                      # the one Hydra check, once per process
    calls = []
    monkeypatch.setattr(compose, "compose_dict_hydra",
                        lambda ov: calls.append(list(ov)) or {})
    for mode, regime, violation in itertools.product(
            group_choices("modes"), group_choices("regime"), group_choices("violation")):
        config = nora.load_config(["trainer=supervised", f"modes={mode}", f"regime={regime}",
                                   f"violation={violation}", "seed=3", "device=cpu",
                                   "train.epochs=1", "trainer.train_subset=256"])
        assert (config.mode.name, config.regime.name, config.violation.name, config.seed) == (
            mode, regime, violation, 3)
    assert calls == []
    for unusual in (["+foo=1"], ["seed=${train.epochs}"], ["~resume_from=null"], ["seed=1", "seed=2"],
                    ["hydra/launcher=basic"], ["replay_changes=[]"]):
        with pytest.raises(nora.ConfigError):     # the stub returns {}: not a config
            nora.load_config(unusual)
    assert len(calls) == 6


@pytest.mark.slow
def test_whole_matrix_with_trims_composes_as_hydra_does():
    for combo in itertools.product(*(group_choices(g) for g in GROUPS)):
        job = [f"{g}={c}" for g, c in zip(GROUPS, combo)]
        job += ["train.epochs=1", "trainer.train_subset=256", "seed=5", "device=cpu"]
        fast, hydra = both(job)
        assert fast == hydra, job
