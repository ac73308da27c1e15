"""A crashed xdist case fails the gate: a worker killed by PID (``kill -9``) in the middle of a
run gives that case a ``crashed`` row everywhere the session reports, the gate lists it, and
the run directory it left is marked ``crashed`` instead of staying ``running``."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
nora_overrides = train.epochs=1 trainer.train_subset=128
"""
# the victim trains seed 1 to the end, then starts seed 2 and, once that run's manifest says
# "running", writes its worker's pid for the outside test to kill
CASES = """
import os
import pathlib
import threading
import time

import pytest


def _announce_when_running(case_dir: pathlib.Path) -> None:
    while not any('"running"' in m.read_text() for m in case_dir.glob("s2/manifest.json")):
        time.sleep(0.02)
    pathlib.Path("victim.pid").write_text(str(os.getpid()))


@pytest.mark.nora(seeds=[1, 2])
def test_case(seeded_trainer, violation, nora_case):
    first = seeded_trainer.fit(seed=1)
    if violation == "missing_seed":
        case_dir = pathlib.Path(os.environ["NORA_TEST_REPORTS"]).glob(f"*/runs/{nora_case.case}")
        threading.Thread(target=_announce_when_running, args=(next(case_dir),),
                         daemon=True).start()
        seeded_trainer.fit(seed=2, overrides=["train.epochs=400"])
    assert first.outcome == first.expected_outcome
"""


def _run_and_kill(pytester: pytest.Pytester, timeout_s: float = 500.0) -> tuple[int, str, int]:
    env = dict(os.environ, NORA_TEST_REPORTS=str(pytester.path / "reports"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:randomly", "-p", "no:cacheprovider",
         "--nora-violations", "none,missing_seed,eval_mode_bug,aug_leak", "--nora-gate"],
        cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid_file = pytester.path / "victim.pid"
    deadline = time.monotonic() + timeout_s
    try:
        while not pid_file.exists() or not pid_file.read_text():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the victim never started its second run"
            time.sleep(0.05)
        victim = int(pid_file.read_text())
        assert victim not in (os.getpid(), proc.pid)
        os.kill(victim, signal.SIGKILL)
        out, _ = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, victim


@pytest.mark.slow
def test_a_worker_killed_mid_run_fails_the_gate_with_a_crashed_row(pytester):
    pytester.makeini(INI)
    pytester.makepyfile(test_cases=CASES)
    rc, out, _victim = _run_and_kill(pytester)
    session = pytester.path / "reports" / "latest"
    victim_id = "test_cases.py::test_case[missing_seed]"
    assert rc == 1, out
    assert f"crashed while running {victim_id!r}" in out   # xdist's own line

    df = pd.read_csv(session / "results.csv")
    rows = df[df["test_id"] == victim_id].sort_values("run")
    # the finished first run is recovered from its run directory; the killed one is crashed
    assert list(rows["outcome"]) == ["fixed", "crashed"], rows.to_dict("records")
    assert list(rows["seed"]) == [1, 2]
    crashed = rows.iloc[1]
    assert crashed["status"] == "crashed" and crashed["as_expected"] == False  # noqa: E712
    assert "crashed" in crashed["error"] and crashed["worker"].startswith("gw")
    others = df[df["test_id"] != victim_id]
    assert len(others) == 3 and set(others["outcome"]) <= {"clean", "fixed"}, others

    manifest = json.loads((session / crashed["run_dir"] / "manifest.json").read_text())
    assert manifest["status"] == "crashed" and "crashed" in manifest["error"]

    summary = json.loads((session / "summary.json").read_text())
    assert summary["gate"]["passed"] is False
    assert summary["crashed"] == [victim_id]
    assert summary["outcomes"]["crashed"] == 1
    reasons = [f for f in summary["gate"]["failures"] if f["test_id"] == victim_id]
    assert [f["seed"] for f in reasons] == [2] and "crashed" in reasons[0]["reason"]
    assert "crashed" in (session / "report.md").read_text()

    assert "NORA gate: FAILED" in out and "NORA gate: passed" not in out
    assert f"{victim_id} (seed 2): crashed" in out
    assert "X!" in out, "the matrix cell of the crashed case"
    assert "manifest marked 'crashed'" in out, "the crash report names the run directory"


class _Gateway:
    id = "gw1"


class _Node:
    gateway = _Gateway()


def test_the_controller_turns_a_crash_into_rows_and_marks_the_manifest(tmp_path):
    """The default-suite variant: the controller's crash hook on a real finished run and a
    run left ``running``, without paying for three xdist workers."""
    import nora
    from nora.pytest.crash import case_info
    from nora.pytest.reporter import NoraReporter
    from nora.pytest.case import CaseSpec
    from nora.records import write_json
    from nora.session_report import write_session_report

    session = tmp_path / "session"
    spec = CaseSpec(test_id="t.py::test_case[missing_seed]", case="t.test_case.missing_seed",
                    trainer="supervised", mode="norm_aware", regime="balanced",
                    violation="missing_seed", seeds=(1, 2), overrides=())
    case_dir = session / "runs" / spec.case
    config = nora.load_config(["train.epochs=1", "trainer.train_subset=64", "seed=1",
                               "violation=missing_seed"])
    nora.train(config, run_dir=case_dir / "s1")
    write_json(case_dir / "s2" / "manifest.json",
               {"status": "running", "started_at": "9999-01-01T00:00:00",
                "config": config.model_copy(update={"seed": 2}).model_dump(mode="json")})

    class Info:
        session_dir = session
    reporter = NoraReporter.__new__(NoraReporter)
    reporter.records, reporter.started, reporter.duplicates = {}, {}, 0
    reporter.info = Info()

    class Report:
        nodeid, sections = spec.test_id, []
    setup = Report()
    setup.nora_case = case_info(spec, "gw1", [1, 2])
    reporter.pytest_runtest_logreport(setup)
    crash = Report()
    crash.node, crash.sections = _Node(), []
    reporter.pytest_handlecrashitem(spec.test_id, crash, sched=None)

    recs = sorted(reporter.records.values(), key=lambda r: r["run"])
    assert [(r["seed"], r["outcome"]) for r in recs] == [(1, "fixed"), (2, "crashed")]
    assert recs[1]["expected_outcome"] == "fixed" and recs[1]["as_expected"] is False
    assert json.loads((case_dir / "s2" / "manifest.json").read_text())["status"] == "crashed"
    assert json.loads((case_dir / "s1" / "manifest.json").read_text())["status"] == "done"
    (name, text), = crash.sections
    assert name == "NORA case" and "manifest marked 'crashed'" in text and "s2" in text

    report = write_session_report(session, recs, gate=True)
    assert report.summary["gate"]["passed"] is False
    assert report.summary["crashed"] == [spec.test_id]
    assert [f["reason"] for f in report.failures] == [
        "crashed: worker 'gw1' crashed while running the case"]
    assert "X!" in (session / "report.md").read_text()


def test_a_crash_before_setup_finished_gives_no_row_to_a_non_nora_test(tmp_path):
    from nora.pytest.crash import crashed_records

    assert crashed_records("t.py::test_plain", "gw0", tmp_path, "worker 'gw0' crashed",
                           None) == []
