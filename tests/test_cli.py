"""``python -m nora`` as users type it: the seed document's examples, exit codes, errors."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nora.cli import main
from nora.records import read_json

SMALL = ["train.epochs=1", "trainer.train_subset=256"]


def nora_cli(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "nora", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_dirs(cwd: Path) -> list[Path]:
    return sorted(p for p in (cwd / "runs").glob("*") if p.is_dir()) if (cwd / "runs").exists() else []


def test_default_train_needs_no_arguments(tmp_path):
    proc = nora_cli(tmp_path, "train")
    assert proc.returncode == 0, proc.stderr
    (run,) = run_dirs(tmp_path)
    manifest = read_json(run / "manifest.json")
    cfg = manifest["config"]
    assert (cfg["mode"]["name"], cfg["regime"]["name"], cfg["trainer"]["name"]) == (
        "norm_aware", "balanced", "supervised")
    assert manifest["metrics"]["accuracy"] > 0.9 and "outcome=clean" in proc.stdout
    # the final line names its metric, rounded; no unnamed 17-digit number
    assert re.search(r"outcome=clean .*accuracy=0\.\d{4},", proc.stdout)
    assert not re.search(r"\d\.\d{9,}", proc.stdout)
    # piped: progress is a few short lines (stdout and stderr), not one redrawn bar
    lines = (proc.stdout + proc.stderr).split("\n")
    assert max(map(len, lines)) < 300 and "\r" not in proc.stderr
    progress = [ln for ln in lines if re.search(r"train: \d+/\d+ steps", ln)]
    assert 5 <= len(progress) <= 12
    # train.log holds the run's start, progress and result
    log = (run / "train.log").read_text()
    assert "supervised, 5 epoch(s)" in log and "steps (100%)" in log
    assert "outcome=clean (expected clean)" in log and f"records: {run}" in log


def test_strict_missing_seed_halts_with_exit_3_and_names_the_fix(tmp_path):
    proc = nora_cli(tmp_path, "train", "modes=norm_aware", "regime=strict",
                    "violation=missing_seed", *SMALL)
    assert proc.returncode == 3
    assert "missing_seed" in proc.stderr and "set_seed" in proc.stderr
    (run,) = run_dirs(tmp_path)
    log = (run / "train.log").read_text()
    assert "agent halt on missing_seed" in log and "HALTED:" in log
    assert "HALTED" not in proc.stdout     # said once, on stderr
    assert read_json(run / "norms" / "agent_metrics.json")["halts"] == 1


def test_multirun_compares_three_regimes(tmp_path):
    proc = nora_cli(tmp_path, "train", "modes=norm_aware",
                    "regime=balanced,strict,exploratory", "--multirun",
                    "violation=missing_seed", "seed=42", *SMALL)
    assert proc.returncode == 3, proc.stderr  # one job halted
    (sweep,) = run_dirs(tmp_path)
    assert sweep.name.startswith("multirun_")
    outcomes = {read_json(sweep / j / "manifest.json")["config"]["regime"]["name"]:
                read_json(sweep / j / "norms" / "reproducibility_metrics.json")["outcome"]
                for j in ("0", "1", "2")}
    assert outcomes == {"balanced": "fixed", "strict": "halted", "exploratory": "logged"}
    assert "halted" in proc.stdout and "fixed" in proc.stdout


def test_example_balanced_nondeterminism_and_replay(tmp_path):
    proc = nora_cli(tmp_path, "train", "modes=norm_aware", "regime=balanced",
                    "violation=nondeterminism_enabled", "seed=42", *SMALL)
    assert proc.returncode == 0 and "outcome=fixed" in proc.stdout
    (run,) = run_dirs(tmp_path)
    decision = read_json(run / "norms" / "agent_metrics.json")
    assert decision["auto_fixes"] == 1
    replayed = nora_cli(tmp_path, "replay", str(run))
    assert replayed.returncode == 0 and "reproduces" in replayed.stdout


def test_pipeline_untracked_change_replay_fails_with_exit_1(tmp_path):
    proc = nora_cli(tmp_path, "train", "modes=pipeline", "violation=untracked_config_change",
                    *SMALL)
    assert proc.returncode == 0
    (run,) = run_dirs(tmp_path)
    replayed = nora_cli(tmp_path, "replay", str(run))
    assert replayed.returncode == 1 and "does NOT reproduce" in replayed.stdout


@pytest.mark.slow  # 25 s: a real submitit launcher process per job
def test_sweep_through_submitit_local_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = nora_cli(tmp_path, "train", "--multirun", "hydra/launcher=submitit_local",
                    "seed=1,2", *SMALL)
    assert proc.returncode == 0, proc.stderr
    (sweep,) = run_dirs(tmp_path)
    fps = {read_json(sweep / j / "manifest.json")["fingerprint"] for j in ("0", "1")}
    assert len(fps) == 2


@pytest.mark.parametrize("args, needles", [
    (["train", "regime=foo"], ["regime", "'foo'", "balanced, exploratory, strict"]),
    (["train", "train.bogus=1"], ["train.bogus", "'1'", "epochs"]),
    (["train", "train.epochs=ten"], ["train.epochs", "'ten'", "integer"]),
    (["train", "train.epochs=-1"], ["train.epochs", "-1"]),
    (["train", "seed=1,2"], ["seed=1,2", "--multirun"]),
    (["train", "--multirun", "regime=strict,nope"], ["regime", "'nope'", "strict"]),
    (["replay", "runs/missing"], ["runs/missing", "manifest.json"]),
    (["train", "hydra/launcher=submitit"], ["hydra/launcher", "submitit_local"]),
])
def test_bad_input_exits_2_and_leaves_no_run_directory(tmp_path, monkeypatch, capsys, args,
                                                        needles):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err
    assert not (tmp_path / "runs").exists()


def test_unknown_command_is_usage_error():
    with pytest.raises(SystemExit) as info:
        main(["fly"])
    assert info.value.code == 2
