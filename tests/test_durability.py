"""``durable``: a run fsyncs every record and checkpoint it writes (the default), or relies on
atomic renames alone (``durable=false``, what pytest cases train with): no fsync at all, and
the run directory is just as whole and loadable."""
from __future__ import annotations

import os

import pytest
import torch

import nora
from nora.checkpoint import load_checkpoint
from nora.reader import read_manifest

pytest_plugins = ["pytester"]

SMALL = ["train.epochs=1", "trainer.train_subset=64", "train.checkpoint_every=2"]


@pytest.fixture
def fsyncs(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    return calls


def _whole(run_dir) -> None:
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "done" and manifest["checkpoints"]
    for rel in manifest["checkpoints"]:          # each loads against its recorded checksum
        assert "model" in load_checkpoint(run_dir / rel)
    assert torch.load(run_dir / "state" / "final.pt", weights_only=True)


def test_a_durable_run_fsyncs_every_file_it_writes(tmp_path, fsyncs):
    nora.train(nora.load_config(SMALL), run_dir=tmp_path / "run")
    written = [p for p in (tmp_path / "run").rglob("*")
               if p.is_file() and p.suffix != ".jsonl"]   # JSONL lines are flushed, not synced
    assert len(fsyncs) >= 2 * len(written), (len(fsyncs), len(written))  # file and folder
    _whole(tmp_path / "run")


def test_a_run_with_durable_false_fsyncs_nothing_and_is_just_as_whole(tmp_path, fsyncs):
    result = nora.train(nora.load_config([*SMALL, "durable=false"]), run_dir=tmp_path / "run")
    assert fsyncs == []
    _whole(tmp_path / "run")
    durable = nora.train(nora.load_config(SMALL), run_dir=tmp_path / "durable")
    assert durable.fingerprint == result.fingerprint, "durability never changes training"
    assert read_manifest(tmp_path / "run")["config"]["durable"] is False


CASES = """
import pytest

def test_default(nora_config, nora_record):
    nora_record("durable", nora_config.durable)

@pytest.mark.nora(overrides=["durable=true"])
def test_marker(nora_config, nora_record):
    nora_record("durable", nora_config.durable)
"""


def test_pytest_cases_train_without_fsyncs_unless_told_otherwise(pytester):
    import pandas as pd

    pytester.makepyfile(test_cases=CASES)
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)
    rows = pd.read_csv(pytester.path / "reports" / "latest" / "results.csv")
    assert dict(zip(rows["test_id"], rows["metric.durable"])) == {
        "test_cases.py::test_default": False, "test_cases.py::test_marker": True}
    pytester.makeini("[pytest]\nnora_overrides = durable=true\n")
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)
    rows = pd.read_csv(pytester.path / "reports" / "latest" / "results.csv")
    assert rows["metric.durable"].tolist() == [True, True]
