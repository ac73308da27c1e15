"""The session report from case records: rows, gate rules, files, and the matrix table."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest

import nora
from nora import session_report as sr


def rec(test_id: str, *, mode="norm_aware", regime="strict", violation="missing_seed",
        outcome="halted", expected="halted", run=0, decisions=1, **extra) -> dict:
    """A record as the plugin would produce it, without training."""
    r = sr.case_record(None, test_id=test_id, run=run, seed=42,
                       spec={"mode": mode, "regime": regime, "violation": violation,
                             "trainer": "supervised"})
    in_scope = violation != "none" and expected not in ("undetected", "clean")
    r.update(expected_outcome=expected, outcome=outcome, as_expected=outcome == expected,
             in_scope=in_scope, status="done", false_positives=0,
             detection_rate_pct=(100.0 if outcome not in ("undetected", "clean") else 0.0)
             if violation != "none" else None,
             agent_decisions=[{"agent_action": "halt", "step": i} for i in range(decisions)],
             decisions=decisions)
    r.update(extra)
    return r


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One real (tiny) halted run, as the core writes it."""
    path = tmp_path_factory.mktemp("runs") / "r0"
    cfg = nora.load_config(["modes=norm_aware", "regime=strict", "violation=missing_seed",
                            "train.epochs=1", "trainer.train_subset=64"])
    with pytest.raises(nora.NormViolationError):
        nora.train(cfg, run_dir=path)
    return path


def test_case_record_reads_the_run_directory(run_dir):
    r = sr.case_record(run_dir, test_id="t.py::test[x]", case="c", duration_sec=0.5,
                       verdicts={"mine": False}, relative_to=run_dir.parent)
    assert (r["mode"], r["regime"], r["violation"], r["seed"]) == ("norm_aware", "strict",
                                                                   "missing_seed", 42)
    assert r["outcome"] == r["expected_outcome"] == "halted" and r["as_expected"]
    assert r["status"] == "halted" and r["in_scope"] and r["detection_rate_pct"] == 100.0
    assert r["decisions"] == len(r["agent_decisions"]) == 1
    assert r["decision_actions"] == "halt:1" and r["run_dir"] == "r0"
    assert r["verdicts"] == {"mine": {"passed": False, "detail": ""}}
    assert r["verdicts_passed"] is False
    json.dumps(r)   # plain data, fit to cross a process boundary


def test_case_record_of_a_run_that_crashed_keeps_the_spec(tmp_path):
    r = sr.case_record(tmp_path / "never-written", test_id="t", error="RuntimeError: boom",
                       spec={"mode": "pipeline", "regime": "balanced", "violation": "none",
                             "trainer": "supervised"}, seed=3)
    assert (r["mode"], r["violation"], r["seed"], r["status"]) == ("pipeline", "none", 3,
                                                                   "failed")
    assert r["outcome"] is None and r["as_expected"] is None
    assert sr.gate_failures([r])[0]["reason"] == "run failed: RuntimeError: boom"


@pytest.mark.parametrize("record, reason", [
    (rec("a", outcome="fixed"), "outcome fixed, expected halted"),
    (rec("b", outcome="undetected", expected="undetected", mode="pipeline"), None),
    (rec("c", outcome="undetected", expected="halted"), "went undetected"),
    (rec("d", violation="none", outcome="clean", expected="clean", false_positives=2),
     "clean run raised 2 false positive(s)"),
    (rec("e", verdicts={"rerun_identical": {"passed": False, "detail": "a vs b"}}),
     "verdict rerun_identical failed: a vs b"),
    (rec("f"), None),
])
def test_gate_rules(record, reason):
    failures = sr.gate_failures([record])
    if reason is None:
        assert failures == []
    else:
        assert any(reason in f["reason"] for f in failures), failures
        assert all(f["test_id"] == record["test_id"] for f in failures)


def test_frame_columns_types_and_order_do_not_depend_on_arrival():
    records = [rec("t::b", run=1), rec("t::a", metrics={"acc": 0.9}), rec("t::b", run=0)]
    df = sr.records_frame(records)
    assert list(df.columns[:len(sr.RESULT_COLUMNS)]) == sr.RESULT_COLUMNS
    assert list(df.columns[len(sr.RESULT_COLUMNS):]) == ["metric.acc"]
    assert list(zip(df["test_id"], df["run"])) == [("t::a", 0), ("t::b", 0), ("t::b", 1)]
    assert str(df["seed"].dtype) == "Int64" and str(df["decisions"].dtype) == "Int64"
    pd.testing.assert_frame_equal(df, sr.records_frame(list(reversed(records))))


def test_matrix_table_flags_cases_not_as_expected():
    table = sr.matrix_table([rec("a"), rec("b", regime="balanced", outcome="logged",
                                          expected="fixed")])
    assert table.loc["missing_seed", ("norm_aware", "str")] == "H"
    assert table.loc["missing_seed", ("norm_aware", "bal")] == "L!"
    assert sr.matrix_table([{"test_id": "x"}]) is None


def test_write_session_report(tmp_path):
    records = [rec("t::a", decisions=2), rec("t::b", outcome="fixed", metrics={"n": 3}),
               rec("t::c", violation="none", outcome="clean", expected="clean", decisions=0)]
    report = sr.write_session_report(tmp_path / "s1", records, gate=True, meta={"x": 1})
    names = sorted(p.name for p in (tmp_path / "s1").iterdir())
    assert names == ["agent_decisions.jsonl", "report.md", "results.csv", "summary.json"]
    assert os.readlink(tmp_path / "latest") == "s1"
    summary = json.loads((tmp_path / "s1" / "summary.json").read_text())
    assert summary["cases"] == 3 and summary["x"] == 1 and summary["decisions"] == 3
    assert summary["gate"] == {"enabled": True, "passed": False,
                               "failures": report.failures}
    assert [f["test_id"] for f in report.failures] == ["t::b"]
    df = pd.read_csv(tmp_path / "s1" / "results.csv")
    assert list(df.columns) == sr.RESULT_COLUMNS + ["metric.n"] and len(df) == 3
    lines = [json.loads(ln) for ln in
             (tmp_path / "s1" / "agent_decisions.jsonl").read_text().splitlines()]
    assert [ln["test_id"] for ln in lines] == ["t::a", "t::a", "t::b"]
    assert len(lines) == df["decisions"].sum()
    md = (tmp_path / "s1" / "report.md").read_text()
    assert "## Gate failures" in md and "`t::b`" in md and "## Enforcement matrix" in md
    sr.write_session_report(tmp_path / "s2", records[:1])
    assert os.readlink(tmp_path / "latest") == "s2"
    assert "3 case(s)" in sr.terminal_text(report, records)


def test_records_from_run_dirs(run_dir, tmp_path):
    records = sr.records_from_run_dirs([run_dir, tmp_path])   # tmp_path is no run
    assert len(records) == 1 and records[0]["outcome"] == "halted"
