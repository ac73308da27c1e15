"""Tracking from the records: a finished run appears in MLflow and TensorBoard, checked with
the libraries' own readers (``mlflow.search_runs``, TensorBoard's event accumulator)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import nora
from nora.tracking import TrackingConfig, TrackingError, log_run, read_run

pytest_plugins = ["pytester"]

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

_TINY = ["train.epochs=1", "trainer.train_subset=64", "train.batch_size=32"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run with an agent decision (eval_mode_bug fixed) and a config change."""
    rd = tmp_path_factory.mktemp("run") / "run"
    nora.train(nora.load_config([*_TINY, "violation=eval_mode_bug", "tracking=mlflow"]),
               run_dir=rd)
    return rd


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def test_read_run_flattens_config_and_reads_series(run_dir: Path) -> None:
    view = read_run(run_dir)
    assert view.params["train.epochs"] == "1" and view.params["violation.name"] == "eval_mode_bug"
    assert view.params["trainer.train_subset"] == "64"
    steps = [s for k, _, s in view.step_metrics if k == "loss"]
    assert steps == [0, 1]                       # 64 images / batch 32
    assert any(k == "accuracy" for k, _, _ in view.eval_metrics)
    assert view.tags["nora.outcome"] == "fixed" and len(view.tags["nora.fingerprint"]) == 32
    assert {p.name for p in view.artifacts} >= {"manifest.json", "metrics.jsonl",
                                                 "agent_decisions.jsonl"}


def _synthetic_halted_run(tmp_path: Path) -> Path:
    rd = tmp_path / "r"
    (rd / "norms").mkdir(parents=True)
    (rd / "manifest.json").write_text(json.dumps({"status": "halted", "config": {
        "seed": None, "violation": {"name": "missing_seed"}, "train": {"lrs": [0.1, 0.2]}}}))
    (rd / "metrics.jsonl").write_text(json.dumps(
        {"kind": "step", "step": 3, "loss": float("nan"), "lr": [0.1, 0.01], "ok": True}) + "\n")
    finding = {"violation": "missing_seed", "severity": "medium", "source": "present",
               "event": "startup", "step": 0, "evidence": {}, "false_positive": False}
    (rd / "norms" / "reproducibility_metrics.json").write_text(json.dumps({
        "outcome": "halted", "findings": [finding], "verdicts": {
            "rerun_identical": {"passed": False, "detail": "differs"}, "resume": True}}))
    return rd


def test_findings_and_verdicts_become_tags(tmp_path: Path) -> None:
    view = read_run(_synthetic_halted_run(tmp_path))
    assert view.tags["nora.findings"] == "missing_seed(present, medium)"
    assert view.tags["nora.findings_count"] == "1"
    assert view.tags["nora.verdict.rerun_identical"] == "failed"
    assert view.tags["nora.verdict.resume"] == "passed"
    assert view.tags["nora.verdicts_passed"] == "false"
    assert view.params["seed"] == "None" and view.params["train.lrs"] == "[0.1, 0.2]"
    # NaN loss and booleans are not metrics; per-group LRs are
    assert view.step_metrics == [("lr/group0", 0.1, 3), ("lr/group1", 0.01, 3)]
    assert view.status == "halted"


def test_a_halted_run_ends_failed_in_mlflow(tmp_path: Path, mlflow_uri: str) -> None:
    run_id = log_run(_synthetic_halted_run(tmp_path),
                     TrackingConfig(name="mlflow", uri=mlflow_uri, experiment="halted"),
                     extra_tags={"nora.hpo.trial": 7})
    run = mlflow.MlflowClient(mlflow_uri).get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["nora.findings"] == "missing_seed(present, medium)"
    assert run.data.tags["nora.verdict.rerun_identical"] == "failed"
    assert run.data.tags["nora.hpo.trial"] == "7"


def test_mlflow_search_runs_finds_params_metrics_tags_artifacts(run_dir: Path,
                                                                mlflow_uri: str) -> None:
    config = nora.load_config([*_TINY, "violation=eval_mode_bug", "tracking=mlflow",
                               f"tracking.uri={mlflow_uri}", "tracking.experiment=t1"])
    run_id = log_run(run_dir, config)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    mlflow.set_tracking_uri(mlflow_uri)
    df = mlflow.search_runs(experiment_names=["t1"],
                            filter_string="tags.`nora.outcome` = 'fixed'")
    assert list(df["run_id"]) == [run_id]
    row = df.iloc[0]
    assert row["params.train.lr"] == str(manifest["config"]["train"]["lr"])
    assert row["tags.nora.fingerprint"] == manifest["fingerprint"]
    assert row["tags.nora.violation"] == "eval_mode_bug"
    assert row["metrics.nora.auto_fixes"] == 1.0
    client = mlflow.MlflowClient(mlflow_uri)
    history = client.get_metric_history(run_id, "train/loss")
    losses = [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text()
                                     .splitlines()) if r["kind"] == "step"]
    assert [m.step for m in history] == [0, 1] and [m.value for m in history] == losses
    names = {a.path for a in client.list_artifacts(run_id)}
    names |= {a.path for a in client.list_artifacts(run_id, "norms")}
    assert {"manifest.json", "metrics.jsonl", "norms/agent_decisions.jsonl",
            "norms/reproducibility_metrics.json"} <= names
    assert client.get_run(run_id).info.status == "FINISHED"
    # logging the same run directory again does not duplicate it
    assert log_run(run_dir, config) == run_id
    assert len(mlflow.search_runs(experiment_names=["t1"])) == 1


def test_tensorboard_scalars_and_decisions_read_back(run_dir: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rd = tmp_path / "copy"
    shutil.copytree(run_dir, rd)
    for _ in range(2):                       # a second logging replaces, never doubles
        out = Path(log_run(rd, TrackingConfig(name="tensorboard")))
    assert out == rd / "tensorboard"
    ea = EventAccumulator(str(out), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    steps = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
    want = [r for r in steps if r["kind"] == "step"]
    got = ea.Scalars("train/loss")                # TensorBoard keeps float32
    assert [e.step for e in got] == [r["step"] for r in want]
    assert [e.value for e in got] == pytest.approx([r["loss"] for r in want], rel=1e-6)
    assert [e.step for e in ea.Scalars("train/lr")] == [0, 1]
    assert len(ea.Scalars("eval/accuracy")) == 1
    text = ea.Tensors("agent/decisions/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "auto_fix" in text and "eval_mode_bug" in text


def test_none_logs_nothing_and_bad_input_is_named(tmp_path: Path, run_dir: Path) -> None:
    assert log_run(run_dir, nora.load_config(_TINY)) is None
    assert not (run_dir / "tensorboard").exists()
    with pytest.raises(TrackingError, match="no manifest.json"):
        log_run(tmp_path, "mlflow")
    with pytest.raises(TrackingError, match="valid|tracker name"):
        log_run(run_dir, object())
    with pytest.raises(nora.errors.ConfigError, match="tracking='wandb'.*mlflow, none, "
                                                      "tensorboard"):
        nora.load_config(["tracking=wandb"])


def test_require_fails_before_training_when_the_tracker_is_missing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from nora.tracking import require

    require(nora.load_config(["tracking=tensorboard"]))          # installed here: no error
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(TrackingError, match=r"pip install 'nora\[mlflow\]'"):
        require(nora.load_config(["tracking=mlflow"]))
    require(nora.load_config([]))                                 # tracking=none


GATED_SESSION = """
import pytest

TINY = ["train.epochs=1", "trainer.train_subset=64", "train.batch_size=32"]

@pytest.mark.nora(overrides=TINY)
def test_clean(seeded_trainer, nora_record):
    seeded_trainer.fit()
    nora_record.verdict("accuracy_above_99", False, "one epoch on 64 images")

@pytest.mark.nora(violation="eval_mode_bug", regime="balanced", overrides=TINY)
def test_fixed(seeded_trainer):
    assert seeded_trainer.fit().outcome == "fixed"
"""


@pytest.mark.parametrize("workers", ["0", pytest.param("2", marks=pytest.mark.slow)],
                         ids=["-n0", "-n2"])
def test_gated_pytest_session_logs_each_case(pytester: pytest.Pytester, run_dir: Path,
                                             mlflow_uri: str, monkeypatch: pytest.MonkeyPatch,
                                             workers: str) -> None:
    """Under xdist too: the controller logs every worker's case, once."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    experiment = f"gated-n{workers}"               # one store for the module
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)
    pytester.makepyfile(test_cases=GATED_SESSION)
    result = pytester.runpytest("--nora-mlflow", "--nora-gate", "-p", "no:randomly",
                                "-n", workers)
    assert result.ret == 1                              # the gate fails on the verdict
    result.stdout.fnmatch_lines([f"*NORA mlflow: logged 2 run(s) to sqlite:*'{experiment}'*"])
    mlflow.set_tracking_uri(mlflow_uri)
    df = mlflow.search_runs(experiment_names=[experiment]).set_index("tags.nora.test_id")
    assert sorted(df.index) == ["test_cases.py::test_clean", "test_cases.py::test_fixed"]
    clean, fixed = df.loc["test_cases.py::test_clean"], df.loc["test_cases.py::test_fixed"]
    assert clean["tags.nora.verdict.accuracy_above_99"] == "failed"
    assert clean["tags.nora.gate"].startswith("failed: ") and "accuracy_above_99" in \
        clean["tags.nora.gate"]
    assert fixed["tags.nora.gate"] == "passed" and fixed["tags.nora.outcome"] == "fixed"
    assert fixed["tags.nora.test_outcome"] == "passed"
    assert fixed["params.violation.name"] == "eval_mode_bug"
    assert fixed["metrics.nora.auto_fixes"] == 1.0
