"""A trainer outside the ``nora`` package (examples/wine/nora_wine.py, the README's example),
registered by entry point in a temporary installed distribution: NORA's matrix, findings,
replay and CLI work on it with no violation-specific code in it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nora
from nora import registry

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wine" / "nora_wine.py"
SMALL = ["trainer=wine", "train.epochs=2"]


@pytest.fixture(scope="module")
def wine_site(tmp_path_factory: pytest.TempPathFactory):
    """Install the example as a distribution with a ``nora.trainers`` entry point."""
    site = tmp_path_factory.mktemp("site")
    shutil.copy(EXAMPLE, site / EXAMPLE.name)
    info = site / "nora_wine-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nora-wine\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[nora.trainers]\nwine = nora_wine:WineTrainer\n")
    sys.path.insert(0, str(site))
    registry.clear()
    yield site
    sys.path.remove(str(site))
    registry.clear()


def _run(tmp_path: Path, *overrides: str) -> nora.RunResult:
    config = nora.load_config([*SMALL, *overrides])
    try:
        return nora.train(config, run_dir=tmp_path / "_".join(o.split("=")[1] for o in overrides))
    except nora.NormViolationError as exc:
        return exc.result


@pytest.mark.parametrize("mode", ["norm_aware", pytest.param("agentic", marks=pytest.mark.slow),
                                  pytest.param("pipeline", marks=pytest.mark.slow)])
@pytest.mark.parametrize("regime", ["strict", "balanced", "exploratory"])
@pytest.mark.parametrize("violation", ["none", "missing_seed", "nondeterminism_enabled",
                                       "untracked_config_change", "amp_nan", "eval_mode_bug",
                                       "aug_leak", "checkpoint_incomplete"])
def test_user_trainer_gives_the_expected_outcomes(wine_site, tmp_path, mode, regime, violation):
    assert "wine" in registry.names("trainer")
    r = _run(tmp_path, f"modes={mode}", f"regime={regime}", f"violation={violation}")
    assert r.outcome == nora.expected_outcome(mode, regime, violation)
    assert {f["violation"] for f in r.findings} <= {violation}
    assert r.false_positives == 0


def test_user_trainer_learns_and_reruns_bit_identical(wine_site, tmp_path):
    a = _run(tmp_path, "train.epochs=30", "seed=3")
    b = _run(tmp_path / "b", "train.epochs=30", "seed=3")
    assert a.fingerprint == b.fingerprint
    assert a.metrics["accuracy"] >= 0.9 and a.losses[-1] < a.losses[0]


def test_user_trainer_resume_and_replay(wine_site, tmp_path):
    full = _run(tmp_path, "train.epochs=3", "modes=pipeline")
    part = _run(tmp_path / "p", "train.epochs=3", "modes=pipeline", "train.max_steps=3")
    ckpt = part.run_dir / "checkpoints" / "last.pt"
    resumed = _run(tmp_path / "r", "train.epochs=3", "modes=pipeline", f"resume_from={ckpt}")
    assert resumed.fingerprint == full.fingerprint
    assert nora.replay(full.run_dir).reproducible


def test_cli_trains_a_registered_trainer_and_validates_its_keys(wine_site, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(wine_site),
                                                        os.environ.get("PYTHONPATH", "")])}
    ok = subprocess.run([sys.executable, "-m", "nora", "train", "trainer=wine",
                         "train.epochs=1", f"hydra.run.dir={tmp_path / 'run'}"],
                        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "nora", "train", "trainer=wine",
                          "trainer.hidden=0"], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert bad.returncode == 2 and "trainer.hidden" in bad.stderr
