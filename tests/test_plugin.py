"""The pytest plugin end to end, through pytester: options, markers, parametrization,
selection, fixtures, report files, the gate, xdist, and a user's project with no conftest."""
from __future__ import annotations

import importlib.util
import json
import os

import pandas as pd
import pytest
import torch

from nora.session_report import RESULT_COLUMNS

pytest_plugins = ["pytester"]

SMALL_INI = """
[pytest]
nora_overrides = train.epochs=1 trainer.train_subset=128
"""
MATRIX_TEST = """
import pytest

def test_matrix(seeded_trainer, mode, regime, violation, nora_record, device, ddp_group):
    nora_record("device", str(device))
    nora_record("first_port", ddp_group.ports.start)
    for result in seeded_trainer.fit_all():
        assert result.outcome == result.expected_outcome
"""
SUBSET = ["--nora-modes", "norm_aware,pipeline", "--nora-regimes", "strict,balanced",
          "--nora-violations", "none,missing_seed", "-p", "no:randomly"]


@pytest.fixture(scope="module", autouse=True)
def _warm_imports(tmp_path_factory):
    """In-process pytester runs drop the modules each inner session imported; torch modules
    imported lazily by a training step cannot be imported twice, so import them once here."""
    import nora

    config = nora.load_config(["train.epochs=1", "trainer.train_subset=64"])
    nora.train(config, run_dir=tmp_path_factory.mktemp("warm"))


def _session(pytester: pytest.Pytester) -> str:
    return os.readlink(pytester.path / "reports" / "latest")


def _results(pytester: pytest.Pytester) -> pd.DataFrame:
    return pd.read_csv(pytester.path / "reports" / "latest" / "results.csv")


def test_options_are_in_a_nora_group(pytester):
    out = pytester.runpytest("--help").stdout.str()
    assert "NORA reproducibility experiments:" in out
    for flag in ("--nora-modes", "--nora-regimes", "--nora-violations", "--nora-seeds",
                 "--nora-device", "--nora-report-dir", "--nora-gate", "--nora-update-golden"):
        assert flag in out


@pytest.mark.parametrize("args, words", [
    (["--nora-regimes", "strict,strictt"], ["'strictt'", "balanced, exploratory, strict"]),
    (["--nora-modes", "agentic,nope"], ["'nope'", "agentic, norm_aware, pipeline"]),
    (["--nora-violations", "missing_sed"], ["'missing_sed'", "missing_seed"]),
    (["--nora-seeds", "1,x"], ["'x'", "non-negative integer"]),
    (["--nora-device", "tpu"], ["'tpu'", "auto, cpu, cuda, cuda:N"]),
])
def test_bad_option_values_are_usage_errors(pytester, args, words):
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert all(w in err for w in words), err


def test_header_markers_and_update_golden(pytester):
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--nora-seeds", "3,4", "--nora-update-golden")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["nora: seeds=3,4; device=auto; report dir=*reports*;"
                                 " updating golden files"])
    assert not (pytester.path / "reports").exists(), "no NORA case ran: no report"
    markers = pytester.runpytest("--markers").stdout.str()
    for name in ("@pytest.mark.nora(trainer=", "@pytest.mark.gpu", "@pytest.mark.ddp(",
                 "@pytest.mark.slow", "@pytest.mark.strict", "@pytest.mark.missing_seed",
                 "@pytest.mark.norm_aware"):
        assert name in markers


def test_parametrization_ids_and_selection(pytester):
    pytester.makepyfile("""
        import pytest

        def test_case(mode, regime, violation):
            pass

        def test_violation_only(violation):
            pass

        @pytest.mark.nora(regime="strict", violation=["none", "amp_nan"])
        def test_fixed_by_marker(regime, violation):
            assert regime == "strict"
    """)
    ids = pytester.runpytest("--collect-only", "-q", "--strict-markers").stdout.lines
    assert "test_parametrization_ids_and_selection.py::test_case[norm_aware-strict-missing_seed]" \
        in ids
    assert sum("::test_case[" in i for i in ids) == 72
    assert sum("::test_violation_only[" in i for i in ids) == 8
    assert [i.split("::")[1] for i in ids if "fixed_by" in i] == \
        ["test_fixed_by_marker[strict-none]", "test_fixed_by_marker[strict-amp_nan]"]
    chosen = pytester.runpytest("--collect-only", "-q", "--nora-modes", "agentic",
                                "--nora-violations", "none,amp_nan").stdout.lines
    assert sum("::test_case[" in i for i in chosen) == 6
    selected = pytester.runpytest("-q", "-m", "strict and missing_seed", "--strict-markers")
    selected.assert_outcomes(passed=3)   # one per mode; test_violation_only runs balanced
    selected = pytester.runpytest("-q", "-m", "balanced and norm_aware and missing_seed")
    selected.assert_outcomes(passed=2)   # the config's defaults mark unparametrized axes


def test_report_files_columns_and_junitxml(pytester):
    pytester.makeini(SMALL_INI)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.nora(trainer="supervised")
        def test_matrix(seeded_trainer, nora_config, mode, regime, violation, nora_record):
            assert (nora_config.mode.name, nora_config.regime.name) == (mode, regime)
            assert nora_config.violation.name == violation and nora_config.train.epochs == 1
            results = seeded_trainer.fit_all()
            assert len(results) == len(seeded_trainer.seeds) == 2
            nora_record("accuracy", 0.5)
    """)
    result = pytester.runpytest("--nora-modes", "norm_aware", "--nora-regimes", "strict",
                                "--nora-violations", "none,missing_seed", "--nora-seeds", "5,6",
                                "--junitxml", "junit.xml")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*= NORA report =*", "2 case(s), 4 run(s), 4 as expected*",
                                 "*missing_seed*H*"])
    session = pytester.path / "reports" / _session(pytester)
    for name in ("summary.json", "results.csv", "agent_decisions.jsonl", "report.md"):
        assert (session / name).is_file()
    df = _results(pytester)
    stats = [f"metric.accuracy_{k}" for k in ("mean", "std", "iqm", "ci_low", "ci_high",
                                               "ci_width")]
    columns = list(df.columns)
    assert columns[:len(RESULT_COLUMNS)] == RESULT_COLUMNS
    assert set(columns[len(RESULT_COLUMNS):]) == {"metric.accuracy", *stats}  # 2 seeds: stats
    assert sorted(df["seed"]) == [5, 5, 6, 6] and set(df["outcome"]) == {"clean", "halted"}
    assert (df["test_outcome"] == "passed").all() and (df["metric.accuracy"] == 0.5).all()
    for run_dir in df["run_dir"]:
        assert (session / run_dir / "manifest.json").is_file()
        assert (session / run_dir).parent.parent.name == "runs"
    assert "runs/test_report_files_columns_and_junitxml.test_matrix.norm_aware-strict-none/s5" \
        in set(df["run_dir"])
    lines = [json.loads(x) for x in (session / "agent_decisions.jsonl").read_text().splitlines()]
    assert len(lines) == df["decisions"].sum() == 2
    assert all("missing_seed" in ln["test_id"] and ln["agent_action"] == "halt" for ln in lines)
    junit = (pytester.path / "junit.xml").read_text()
    assert 'name="nora.outcome" value="halted"' in junit
    assert 'name="nora.run1.seed" value="6"' in junit
    assert 'name="nora.metric.accuracy" value="0.5"' in junit


def test_gate_fails_names_the_case_and_passes_when_all_hold(pytester):
    pytester.makeini(SMALL_INI)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.nora(mode="norm_aware", regime="balanced")
        def test_case(seeded_trainer, violation, nora_record):
            result = seeded_trainer.fit()
            nora_record.verdict("always_true", True)
            nora_record.verdict("rerun_identical", violation == "none", "made up for the test")
    """)
    args = ["--nora-violations", "none,missing_seed"]
    gated = pytester.runpytest(*args, "--nora-gate")
    assert gated.ret == pytest.ExitCode.TESTS_FAILED
    gated.assert_outcomes(passed=2)
    gated.stdout.fnmatch_lines([
        "NORA gate: FAILED on 1 problem(s)",
        "  test_gate_*.py::test_case[[]missing_seed[]] (seed *): verdict rerun_identical "
        "failed: made up for the test"])
    ungated = pytester.runpytest(*args)
    assert ungated.ret == 0
    ungated.stdout.fnmatch_lines(["NORA gate (off, --nora-gate to enforce) would fail on 1*"])
    passing = pytester.runpytest("--nora-violations", "none", "--nora-gate")
    assert passing.ret == 0
    passing.stdout.fnmatch_lines(["NORA gate: passed"])
    summary = json.loads((pytester.path / "reports" / "latest" / "summary.json").read_text())
    assert summary["gate"] == {"enabled": True, "passed": True, "failures": []}


def test_bad_marker_fails_the_case_with_the_choices(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.nora(regime="strik")
        def test_case(seeded_trainer):
            seeded_trainer.fit()
    """)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*nora(regime='strik'): not a known regime; choices: "
                                 "balanced, exploratory, strict*"])


def test_gpu_cases_skip_cleanly_without_a_gpu_and_ppo_without_its_trainer(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.gpu
        def test_marked():
            pass

        def test_gpu_fixture(gpu_device):
            assert gpu_device.type == "cuda"

        def test_device(device):
            assert device.type in ("cpu", "cuda")

        @pytest.mark.nora(trainer="ppo")
        def test_ppo(seeded_trainer):
            assert seeded_trainer.trainer == "ppo"
    """)
    result = pytester.runpytest("-rs")
    has_gpu = torch.cuda.is_available()
    has_ppo = importlib.util.find_spec("nora.trainers.ppo") is not None
    result.assert_outcomes(passed=1 + 2 * has_gpu + has_ppo,
                           skipped=2 * (not has_gpu) + (not has_ppo))
    if not has_gpu:
        result.stdout.fnmatch_lines(["*needs a CUDA GPU*"])
    if not has_ppo:
        result.stdout.fnmatch_lines(["*trainer 'ppo' is not available*"])


def test_xdist_gives_the_same_report_as_one_process(pytester):
    pytester.makeini(SMALL_INI)
    pytester.makepyfile(test_matrix=MATRIX_TEST)
    # both in fresh processes: the comparison is of launchers, not of this process's state
    serial = pytester.runpytest_subprocess(*SUBSET, "-n", "0", timeout=300)
    serial.assert_outcomes(passed=8)
    one = _results(pytester)
    parallel = pytester.runpytest_subprocess(*SUBSET, "-n", "2", timeout=300)
    parallel.assert_outcomes(passed=8)
    two = _results(pytester)
    assert len(one) == len(two) == 8
    assert set(one["worker"]) == {"main"} and set(two["worker"]) == {"gw0", "gw1"}
    # an unseeded run's fingerprint is random by design; everything else must match
    seeded = ~((one["violation"] == "missing_seed") & (one["mode"] == "pipeline"))
    cols = ["test_id", "seed", "expected_outcome", "outcome", "decisions", "decision_actions"]
    pd.testing.assert_frame_equal(one[cols], two[cols])
    pd.testing.assert_frame_equal(one.loc[seeded, ["fingerprint"]],
                                  two.loc[seeded, ["fingerprint"]])
    assert two.groupby("worker")["metric.first_port"].nunique().sum() == 2
    assert two["metric.first_port"].nunique() == 2, "each worker has its own port range"
    session = pytester.path / "reports" / "latest"
    lines = [json.loads(x) for x in (session / "agent_decisions.jsonl").read_text().splitlines()]
    assert len(lines) == two["decisions"].sum()
    order = [ln["test_id"] for ln in lines]
    assert order == sorted(order), "each case's decisions stay together"


def test_a_crashed_worker_keeps_its_finished_cases(pytester):
    pytester.makepyfile("""
        import os
        import pytest

        @pytest.mark.parametrize("i", range(6))
        def test_case(i, nora_record):
            nora_record("i", i)
            if i == 3:
                os._exit(1)
    """)
    result = pytester.runpytest("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=5, failed=1)
    df = _results(pytester)
    finished = df[df["outcome"] != "crashed"]
    assert sorted(finished["metric.i"]) == [0, 1, 2, 4, 5], "finished cases must all be reported"
    crashed = df.loc[df["outcome"] == "crashed", "test_id"]
    assert list(crashed) == ["test_a_crashed_worker_keeps_its_finished_cases.py::test_case[3]"]
    assert df["test_id"].is_unique


def test_a_users_project_without_conftest(pytester):
    """NORA installed, one experiment, no conftest: the entry point provides everything."""
    pytester.makepyfile(test_experiment="""
        import pytest

        @pytest.mark.nora(overrides=["train.epochs=1", "trainer.train_subset=128"])
        def test_my_experiment(seeded_trainer, violation):
            result = seeded_trainer.fit_all()[0]
            assert result.outcome == result.expected_outcome
    """)
    assert not list(pytester.path.glob("conftest.py"))
    result = pytester.runpytest_subprocess("--nora-violations", "none,missing_seed",
                                           "--nora-gate", timeout=300)
    result.assert_outcomes(passed=2)
    assert result.ret == 0
    df = _results(pytester)
    assert list(df["test_id"]) == ["test_experiment.py::test_my_experiment[missing_seed]",
                                   "test_experiment.py::test_my_experiment[none]"]
    assert list(df["outcome"]) == ["fixed", "clean"]


def test_verify_marker_verifies_each_run_and_gates_on_it(pytester):
    pytester.makeini(SMALL_INI)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.nora(seeds=[3], verify=1.0, overrides=["train.checkpoint_every=2"])
        def test_verified(seeded_trainer):
            seeded_trainer.fit()

        @pytest.mark.nora(seeds=[3], verify=True, violation="untracked_config_change",
                          mode="pipeline", overrides=["train.checkpoint_every=1"])
        def test_untracked(seeded_trainer):
            seeded_trainer.fit()
    """)
    result = pytester.runpytest("--nora-gate", "-p", "no:randomly")
    assert result.ret != 0
    rows = {t.split("::")[-1]: v for t, v in
            _results(pytester).set_index("test_id")["verdicts"].items()}
    assert "verify[s3]=pass" in rows["test_verified"]
    assert "verify[s3]=fail" in rows["test_untracked"]
    summary = json.loads((pytester.path / "reports" / "latest" / "summary.json").read_text())
    reasons = [f["reason"] for f in summary["gate"]["failures"]]
    assert any("verify[s3]" in r and "train.lr" in r for r in reasons), reasons


def test_a_verdict_named_once_per_seed_fails_if_any_seed_failed():
    from types import SimpleNamespace

    from nora.pytest.case import CaseState, Recorder

    state = CaseState(spec=None, worker="gw0")
    record = Recorder(state, SimpleNamespace(user_properties=[]))
    record.verdict("rerun_identical", False, "seed 1 differs")
    record.verdict("rerun_identical", True, "seed 2 equal")
    record.verdict("other", True)
    assert state.verdicts == {
        "rerun_identical": {"passed": False, "detail": "seed 1 differs; seed 2 equal"},
        "other": {"passed": True, "detail": ""}}
