"""Resume equivalence across processes: interrupt at step k, resume in a fresh interpreter,
end bit-identical to the uninterrupted run."""
from __future__ import annotations

import pytest

import nora
from nora.records import read_json

from .test_cli import nora_cli, run_dirs

CASES = {
    "supervised": ["train.epochs=2", "trainer.train_subset=256", "modes=pipeline"],
    "ppo": ["trainer=ppo", "train.epochs=3", "trainer.num_steps=32",
            "trainer.eval_episodes=2", "modes=pipeline"],
}


@pytest.mark.parametrize("trainer", list(CASES))
def test_resume_in_a_fresh_process_equals_the_uninterrupted_run(tmp_path, trainer):
    overrides = CASES[trainer]
    full = nora.train(nora.load_config(overrides), run_dir=tmp_path / "full")
    work = tmp_path / "cli"
    work.mkdir()
    assert nora_cli(work, "train", *overrides, "train.max_steps=2").returncode == 0
    (part,) = run_dirs(work)
    ckpt = part / "checkpoints" / "last.pt"
    proc = nora_cli(work, "train", *overrides, f"resume_from={ckpt}")
    assert proc.returncode == 0, proc.stderr
    resumed = [d for d in run_dirs(work) if d != part][0]
    manifest = read_json(resumed / "manifest.json")
    assert manifest["resume_missing_parts"] == []
    assert manifest["fingerprint"] == full.fingerprint
