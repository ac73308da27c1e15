"""Golden baselines and multi-seed statistics through the plugin, end to end."""
from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
nora_overrides = train.epochs=1 trainer.train_subset=128 modes=pipeline
"""
GOLDEN_TEST = """
import os
import pytest

@pytest.mark.nora(golden=True, seeds=[3])
def test_golden(seeded_trainer):
    extra = ["train.lr=0.004"] if os.environ.get("NORA_PLANT") else []
    seeded_trainer.fit_all(overrides=extra)
"""
SEEDS_TEST = """
import pytest

@pytest.mark.nora(seeds=[0, 1, 2], max_ci_width={width})
def test_spread(seeded_trainer):
    seeded_trainer.fit_all()
"""


@pytest.fixture(autouse=True)
def _warm(tmp_path_factory):
    """Import what a training step imports lazily once, outside the in-process sessions."""
    import nora

    nora.train(nora.load_config(["train.epochs=1", "trainer.train_subset=64"]),
               run_dir=tmp_path_factory.mktemp("warm"))


def test_golden_missing_then_recorded_then_passing_then_failing(pytester, monkeypatch):
    pytester.makeini(INI)
    pytester.makepyfile(test_exp=GOLDEN_TEST)
    first = pytester.runpytest("--nora-gate", "-p", "no:randomly")
    assert first.ret == 0
    first.stdout.fnmatch_lines(["*golden: 1 baseline(s) missing*"])
    assert not (pytester.path / "golden").exists()
    assert pytester.runpytest("--nora-update-golden", "-p", "no:randomly").ret == 0
    data = json.loads((pytester.path / "golden" / "test_exp.test_golden.json").read_text())
    (platform,) = data["platforms"]
    assert "threads-1" in platform and "default/seed=3" in data["platforms"][platform]
    assert pytester.runpytest("--nora-gate", "-p", "no:randomly").ret == 0
    monkeypatch.setenv("NORA_PLANT", "1")
    planted = pytester.runpytest("--nora-gate", "-p", "no:randomly")
    assert planted.ret != 0
    planted.stdout.fnmatch_lines(["*golden*differs from its baseline*",
                                  "*tensors that differ: model.*"])


@pytest.mark.parametrize("width, passes", [(1.0, True), (1e-9, False)])
def test_seed_statistics_and_spread_gate(pytester, width, passes):
    pytester.makeini(INI)
    pytester.makepyfile(test_seeds=SEEDS_TEST.format(width=width))
    result = pytester.runpytest("--nora-gate", "-p", "no:randomly")
    assert (result.ret == 0) is passes
    summary = json.loads(next(pytester.path.glob("reports/*/results.csv")).parent
                         .joinpath("summary.json").read_text())
    assert summary["gate"]["enabled"] and summary["gate"]["passed"] is passes
    assert summary["runs"] == 3
    csv = next(pytester.path.glob("reports/*/results.csv")).read_text()
    assert "accuracy_mean" in csv and "accuracy_ci_width" in csv
    if not passes:
        result.stdout.fnmatch_lines(["*seed_spread*"])
