"""``nora verify``: a clean run verifies; tampered or irreproducible runs fail, naming where."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import nora
from nora.analysis.verify import verify
from nora.analysis.verify_report import detection_guarantee
from nora.analysis.verify_segments import plan_segments
from nora.cli import main
from nora.errors import ConfigError
from nora.records import read_json, write_json
from nora.context import float_bits

from .test_cli import nora_cli

AUDITED = ["train.epochs=2", "trainer.train_subset=384", "train.checkpoint_every=3"]  # 12 steps


def train_run(path: Path, *overrides: str) -> Path:
    try:
        nora.train(nora.load_config([*AUDITED, *overrides]), run_dir=path)
    except nora.NormViolationError:
        pass
    return path


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("verify") / "clean")


@pytest.fixture
def copy_run(clean_run, tmp_path):
    def _copy() -> Path:
        dst = tmp_path / "copy"
        shutil.copytree(clean_run, dst)
        (dst / "verification.json").unlink(missing_ok=True)
        return dst
    return _copy


def test_records_keep_checkpoints_with_checksums_and_leaves(clean_run):
    manifest = read_json(clean_run / "manifest.json")
    kept = {k for k in manifest["checkpoints"] if "step_" in k}
    assert kept == {f"checkpoints/step_{n}.pt" for n in (3, 6, 9, 12)}
    lines = (clean_run / "state" / "step_hashes.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 12 and "names" in json.loads(lines[0])


def test_clean_run_verifies_with_every_segment_replayed(clean_run):
    v = verify(clean_run, budget=1.0, workers=2)
    assert v.verdict == "verified", v.report()
    assert (v.audited_steps, v.total_steps, len(v.segments)) == (12, 12, 4)
    assert all(c["passed"] for c in v.checks) and v.findings == []
    assert v.cost_ratio is not None and v.cost_ratio > 0
    saved = read_json(clean_run / "verification.json")
    assert saved["verdict"] == "verified" and saved["audited_steps"] == 12


def test_small_budget_replays_at_most_its_share(clean_run):
    v = verify(clean_run, budget=0.3, workers=1, seed=3, write=False)
    assert v.verdict == "verified", v.report()
    assert 0 < v.audited_steps <= 0.3 * 12 and v.random_segments == len(v.segments) == 1
    assert "1-(1-p)^1" in v.report()


def test_a_budget_no_segment_fits_is_unverifiable_not_verified(clean_run):
    v = verify(clean_run, budget=0.1, write=False)             # 1 step of 12; segments of 3
    assert v.verdict == "unverifiable" and v.segments == []
    assert "checkpoint_every" in v.reasons[0]


def test_altered_checkpoint_fails_naming_file_and_step(copy_run):
    run = copy_run()
    path = run / "checkpoints" / "step_6.pt"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    v = verify(run, write=False)
    assert v.verdict == "failed" and v.segments == []
    (f,) = [f for f in v.findings if f["check"] == "checksums"]
    assert (f["file"], f["step"]) == ("checkpoints/step_6.pt", 6)


def test_altered_metrics_line_fails_naming_file_and_step(copy_run):
    run = copy_run()
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        rec = json.loads(line)
        if rec.get("kind") == "step" and rec["step"] == 7:
            rec["loss"] = rec["loss"] * 1.01   # with matching bits: only the digest tells
            rec["loss_bits"] = float_bits(rec["loss"])
            lines[i] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    v = verify(run, write=False)
    assert v.verdict == "failed" and v.segments == []
    assert [(f["file"], f["step"]) for f in v.findings] == [("metrics.jsonl", 7)]


def test_other_torch_version_is_unverifiable_exit_4_with_the_diff(copy_run, capsys):
    run = copy_run()
    manifest = read_json(run / "manifest.json")
    manifest["env"]["versions"]["torch"] = "1.13.1"
    manifest["env"]["torch_threads"] = 7          # a thread count is applied, not a reason
    write_json(run / "manifest.json", manifest)
    assert main(["verify", str(run)]) == 4
    out = capsys.readouterr().out
    assert "UNVERIFIABLE" in out and "'1.13.1'" in out
    assert "threads" not in out.split("note:")[0]
    assert read_json(run / "verification.json")["verdict"] == "unverifiable"


@pytest.mark.parametrize("section,key,value,reason", [
    ("env", "device", "cuda:0", "here no CUDA device"),
    ("config", "ddp", {"world_size": 2, "backend": "gloo", "timeout_s": 60.0, "emulate": False},
     "DDP run (world_size=2)"),
])
def test_other_device_type_or_ddp_is_unverifiable(copy_run, section, key, value, reason):
    run = copy_run()
    manifest = read_json(run / "manifest.json")
    manifest[section][key] = value
    write_json(run / "manifest.json", manifest)
    v = verify(run, budget=1.0, write=False)
    assert v.verdict == "unverifiable" and v.segments == []
    assert any(reason in r for r in v.reasons), v.reasons


def test_bad_usage_exit_2_and_config_error(tmp_path, clean_run, capsys):
    proc = nora_cli(tmp_path, "verify", str(tmp_path / "nothing"))     # as a user types it
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(clean_run), "--budget", "0"])
    assert exc.value.code == 2
    assert "budget 0.0 is outside (0, 1]" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="budget"):
        verify(clean_run, budget=1.5)
    with pytest.raises(ConfigError, match="workers"):
        verify(clean_run, workers=0)


def test_untracked_change_fails_static_audit_with_key_and_range(tmp_path):
    run = train_run(tmp_path / "untracked", "modes=pipeline", "violation=untracked_config_change")
    v = verify(run, budget=1.0)
    assert v.verdict == "failed" and v.segments == [] and v.audited_steps == 0
    (f,) = [f for f in v.findings if f["check"] == "hyperparameters"]
    at = 6                                        # at_fraction 0.5 of 12 steps
    lo, hi = f["evidence"]["step_range"]
    assert f["evidence"]["key"] == "train.lr" and lo <= at < hi and hi - lo == 3
    assert "train.lr" in f["message"] and f"between step {lo} and step {hi}" in f["message"]


def test_incomplete_checkpoints_fail_naming_missing_parts(tmp_path):
    run = train_run(tmp_path / "incomplete", "modes=pipeline", "violation=checkpoint_incomplete")
    v = verify(run, budget=1.0)
    assert v.verdict == "failed" and v.segments == []
    parts = [f for f in v.findings if f["check"] == "checkpoint parts"]
    assert len(parts) == 4
    assert set(parts[0]["evidence"]["missing"]) == {"optimizer", "scheduler", "scaler", "rng",
                                                   "agent"}


def test_plan_stays_within_budget_and_follows_its_seed():
    segs = [(a, a + 10) for a in range(0, 200, 10)]
    starts = {a for a, _ in segs}
    plan, drawn = plan_segments(segs, 0.05, 0, starts)
    assert len(plan) == drawn == 1
    assert plan == plan_segments(segs, 0.05, 0, starts)[0]
    assert {plan_segments(segs, 0.05, s, starts)[0][0] for s in range(10)} != {plan[0]}
    wide, drawn = plan_segments(segs, 0.25, 0, starts)
    assert (0, 10) in wide and (190, 200) in wide and len(wide) == 5 and drawn == 3
    assert plan_segments(segs, 1.0, 0, starts)[0] == segs
    assert detection_guarantee(0.5, 3) == pytest.approx(0.875)
