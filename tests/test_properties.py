"""Properties that hold for any seed, any valid config, any override string."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nora
from nora.hydra_train import expand as _expand
from nora.config import group_choices, validate

TINY = ["train.epochs=1", "trainer.train_subset=64", "train.batch_size=32"]


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**62))
def test_two_clean_runs_with_any_seed_are_bit_identical(tmp_path_factory, seed):
    config = nora.load_config([*TINY, f"seed={seed}", "modes=pipeline"])
    a = nora.train(config, run_dir=tmp_path_factory.mktemp("a"))
    b = nora.train(config, run_dir=tmp_path_factory.mktemp("b"))
    assert a.fingerprint == b.fingerprint


configs = st.fixed_dictionaries({
    "modes": st.sampled_from(group_choices("modes")),
    "regime": st.sampled_from(group_choices("regime")),
    "violation": st.sampled_from(group_choices("violation")),
    "trainer": st.sampled_from(group_choices("trainer")),
    "seed": st.one_of(st.none(), st.integers(0, 2**31)).map(lambda s: "null" if s is None else s),
    "train.epochs": st.integers(1, 1000),
    "train.lr": st.floats(1e-6, 1.0),
    "repro.torch_threads": st.integers(1, 64),
})


@settings(max_examples=25, deadline=None)
@given(values=configs.filter(lambda v: (v["trainer"], v["violation"]) != ("ppo", "eval_mode_bug")))
def test_any_config_survives_a_manifest_round_trip(values):
    config = nora.load_config([f"{k}={v}" for k, v in values.items()])
    again = validate(json.loads(json.dumps(config.model_dump(mode="json"))))
    assert again == config


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=40))
def test_arbitrary_override_strings_give_a_clean_error_or_a_config(text):
    try:
        for job in _expand([text], multirun=True):
            nora.load_config(job)
    except nora.ConfigError as exc:
        assert str(exc)
