"""Staged HPO through NORA's CLI: trials are NORA runs, the best is rerun, and a best that
does not reproduce is flagged instead of crowned; the refit reports seed statistics."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nora.cli import main
from nora.errors import ConfigError
from nora.hpo import load_stage, narrow

pytest.importorskip("optuna")

_TINY = ["hpo.epochs=1", "trainer.train_subset=64", "train.batch_size=32"]


def _hpo(tmp_path: Path, *args: str) -> int:
    return main(["hpo", *args, "--out", str(tmp_path / "hpo")])


def test_search_crowns_a_reproducing_best(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert _hpo(tmp_path, "hpo=sanity", "hpo.trials=2", *_TINY, "tracking=tensorboard") == 0
    out = capsys.readouterr().out
    runs = sorted(p.name for p in (tmp_path / "hpo/sanity").glob("trial_*"))
    assert len(runs) == 3 and sum(r.endswith("_rerun") for r in runs) == 1
    for run in runs:                                     # each run is tracked
        assert list((tmp_path / "hpo/sanity" / run / "tensorboard").glob("events.out.*"))
    summary = json.loads((tmp_path / "hpo/sanity/summary.json").read_text())
    assert [t["state"] for t in summary["trials"]] == ["COMPLETE", "COMPLETE"]
    best = summary["best"]
    scores = [t["score"] for t in summary["trials"]]
    assert best["score"] == max(scores) and best["reproducible"]
    assert best["fingerprint"] == best["rerun_fingerprint"]
    assert (tmp_path / "hpo/optuna.db").is_file()                  # local SQLite study
    assert f"best: trial {best['trial']}  accuracy={best['score']:.4f}  reproducible: yes" in out
    lines = (tmp_path / "hpo/sanity/best_overrides.txt").read_text().split()
    assert "train.epochs=1" in lines and any(x.startswith("train.lr=") for x in lines)
    # resuming the study runs only the missing trials
    assert _hpo(tmp_path, "hpo=sanity", "hpo.trials=3", *_TINY, "tracking=tensorboard") == 0
    summary = json.loads((tmp_path / "hpo/sanity/summary.json").read_text())
    assert len(summary["trials"]) == 3


def test_a_best_that_does_not_reproduce_is_flagged_not_crowned(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # unseeded generators (missing_seed, no agent to fix it): every rerun differs
    code = _hpo(tmp_path, "hpo=sanity", "hpo.trials=2", "hpo.verify_top=2", *_TINY,
                "modes=pipeline", "violation=missing_seed")
    assert code == 1
    summary = json.loads((tmp_path / "hpo/sanity/summary.json").read_text())
    assert summary["best"] is None and len(summary["flagged"]) == 2
    flagged = summary["flagged"][0]
    assert flagged["fingerprint"] != flagged["rerun_fingerprint"]
    out = capsys.readouterr().out
    assert f"FLAGGED: trial {flagged['trial']}" in out and "does NOT reproduce" in out
    assert "none crowned" in out
    assert not (tmp_path / "hpo/sanity/best_overrides.txt").exists()


def test_refit_reports_seed_statistics(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    stage = tmp_path / "hpo" / "fine"
    stage.mkdir(parents=True)
    best = {"trial": 3, "score": 0.5, "params": {"train.lr": 0.002}, "reproducible": True}
    (stage / "summary.json").write_text(json.dumps({"best": best}))
    assert _hpo(tmp_path, "hpo=refit", "hpo.refit_seeds=[1,2]", *_TINY) == 0
    summary = json.loads((tmp_path / "hpo/refit/summary.json").read_text())
    assert summary["from_stage"] == "fine" and summary["seeds"] == [1, 2]
    scores = [r["score"] for r in summary["runs"]]
    assert summary["stats"]["n"] == 2
    assert summary["stats"]["mean"] == pytest.approx(sum(scores) / 2)
    assert "seed statistics (2 seeds): mean" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    ([], "exactly one hpo=<stage>"),
    (["hpo=nope"], "hpo='nope' is not a known stage; valid choices: coarse, fine, refit"),
    (["hpo=sanity", "hpo.trails=3"], "hpo.trails"),
    (["hpo=sanity", "hpo.epochs=0"], "hpo.epochs = 0"),
    (["hpo=fine"], "run that stage first"),
    (["hpo=refit"], "needs a crowned best"),
    (["hpo=sanity", "regime=nope"], "regime='nope'"),
])
def test_bad_usage_exits_2(tmp_path: Path, args: list[str], message: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    assert _hpo(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_narrow_keeps_ranges_inside_the_original_bounds() -> None:
    space = load_stage("fine").space["supervised"]
    narrowed = narrow(space, {"train.lr": 0.02, "trainer.dropout": 0.1}, 3.0)
    lr, dropout = narrowed["train.lr"], narrowed["trainer.dropout"]
    assert (lr.low, lr.high) == pytest.approx((0.02 / 3, 0.03))      # clipped at high
    assert (dropout.low, dropout.high) == pytest.approx((0.1 - 0.5 / 6, 0.1 + 0.5 / 6))
    clipped = narrow(space, {"trainer.dropout": 0.02}, 3.0)["trainer.dropout"]
    assert (clipped.low, clipped.high) == pytest.approx((0.0, 0.02 + 0.5 / 6))
    assert narrowed["train.batch_size"] == space["train.batch_size"]
    with pytest.raises(ConfigError, match="range low"):
        load_stage("coarse", ["hpo.space.supervised.train.lr.low=1.0"])


@pytest.mark.slow
def test_staged_search_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _hpo(tmp_path, "hpo=all", "hpo.trials=2", *_TINY) == 0
    for stage in ("sanity", "coarse", "fine"):
        summary = json.loads((tmp_path / f"hpo/{stage}/summary.json").read_text())
        assert summary["best"]["reproducible"]
    refit = json.loads((tmp_path / "hpo/refit/summary.json").read_text())
    assert refit["seeds"] == [42, 123, 456, 789, 2023] and refit["stats"]["n"] == 5
    assert refit["from_stage"] == "fine"
    out = capsys.readouterr().out
    assert len(re.findall(r"^best: trial \d+ .* reproducible: yes", out, re.M)) == 3
    assert "seed statistics (5 seeds)" in out


@pytest.mark.slow
def test_trials_are_logged_to_mlflow_one_experiment_per_stage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert _hpo(tmp_path, "hpo=sanity", "hpo.trials=2", *_TINY, "tracking=mlflow",
                "--study", "digits") == 0
    mlflow.set_tracking_uri(uri)
    df = mlflow.search_runs(experiment_names=["digits-hpo-sanity"])
    assert sorted(df["tags.nora.hpo.trial"].dropna()) == ["0", "1"]
    assert len(df["tags.nora.hpo.rerun_of"].dropna()) == 1
