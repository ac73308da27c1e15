"""One error path: every NoraError is one ``nora: error:`` line with its exit code, bad input
leaves no run directory, and a run stopped by a signal says so in its manifest."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import nora
from nora.cli import main
from nora.reader import read_manifest

from .test_cli import SMALL

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _one_error_line(err: str, prefix: str = "nora: error: ") -> str:
    """The one line the user sees; no traceback, nothing else from NORA or Hydra."""
    assert "Traceback" not in err and "Error executing job" not in err, err
    lines = [ln for ln in err.replace("\r", "\n").splitlines()
             if ln.strip() and "step/s" not in ln]                       # progress bars aside
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    return lines[0]


def _no_runs(cwd: Path) -> None:
    assert not (cwd / "runs").exists(), list((cwd / "runs").rglob("*"))


@pytest.mark.parametrize("override, needles", [
    ("resume_from=/etc/passwd", ["/etc/passwd", "no recorded checksum"]),
    ("resume_from=nowhere/last.pt", ["nowhere/last.pt", "does not exist"]),
    ("resume_from=.", ["'.'", "not a file"]),
    pytest.param("device=cuda", ["device='cuda'", "auto, cpu"], marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="the machine has a GPU")),
])
def test_errors_found_before_training_are_one_line_exit_2_and_leave_nothing(
        tmp_path, monkeypatch, capsys, override, needles):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *SMALL, override]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert all(n in line for n in needles), line
    _no_runs(tmp_path)


def test_an_error_inside_the_hydra_job_is_one_line_and_its_run_dir_is_removed(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("nora.hydra_train.preflight", lambda config: None)   # the runner finds it
    monkeypatch.setattr("nora.launcher.preflight", lambda config: None)      # the trainer does
    assert main(["train", *SMALL, "resume_from=/etc/passwd"]) == 2
    assert "/etc/passwd" in _one_error_line(capsys.readouterr().err)
    _no_runs(tmp_path)


def test_a_failed_run_is_exit_1_with_one_line_not_a_rank_traceback(tmp_path, monkeypatch,
                                                                    capsys):
    from nora.ddp import GroupError

    def dies(config, **kwargs):
        raise GroupError("DDP group (world_size=2): rank 1 raised:\nTraceback (most recent call "
                         "last):\n  File \"x.py\", line 1, in f\n    boom()\nRuntimeError: boom",
                         ranks=[1])

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("nora.launcher.train", dies)
    assert main(["train", *SMALL]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line == "nora: error: DDP group (world_size=2): rank 1 raised: RuntimeError: boom"


def test_an_altered_checkpoint_with_a_recomputed_sidecar_is_refused_at_resume(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "orig"
    nora.train(nora.load_config([*SMALL, "train.max_steps=2"]), run_dir=run)
    ckpt = run / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 1.0
    torch.save(state, ckpt)
    ckpt.with_name("last.pt.sha256").write_text(hashlib.sha256(ckpt.read_bytes()).hexdigest())
    assert main(["train", *SMALL, f"resume_from={ckpt}"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(ckpt) in line and "manifest" in line
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["orig"]


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_by_pid_marks_the_run_interrupted_and_exits_cleanly(tmp_path, signum, code):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "nora", "train", "train.epochs=200",
                             "trainer.train_subset=256", "hydra.run.dir=runs/x"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "runs" / "x" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    line = _one_error_line(err, prefix="nora: interrupted")
    assert signal.Signals(signum).name in line and "runs/x" in line
    assert read_manifest(tmp_path / "runs" / "x")["status"] == "interrupted"
