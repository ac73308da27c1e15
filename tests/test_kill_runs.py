"""Training runs killed (SIGKILL) at random moments: the last checkpoint always loads as a
resume would load it, and every record written before the kill reads back (slow tier)."""
from __future__ import annotations

import os
import random
import signal
import time

import pytest

import nora
from nora.checkpoint import load_checkpoint
from nora.reader import read_jsonl, read_manifest, read_steps

# four steps and one checkpoint per epoch: a random kill often lands inside a save
FAST_SAVES = ["train.epochs=40", "trainer.train_subset=128", "train.batch_size=32",
              "modes=pipeline"]
TRIALS = int(os.environ.get("NORA_KILL_TRIALS", 20))


@pytest.mark.slow
def test_runs_killed_at_random_moments_stay_resumable(tmp_path):
    config = nora.load_config(FAST_SAVES)
    rng = random.Random(0)
    resumable = 0
    for trial in range(TRIALS):
        run = tmp_path / f"t{trial}"
        pid = os.fork()
        if pid == 0:
            try:
                nora.train(config, run_dir=run)
            finally:
                os._exit(0)
        ckpt = run / "checkpoints" / "last.pt"
        deadline = time.monotonic() + 120
        while not ckpt.exists():                     # after the first checkpoint ...
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.5))            # ... at a random moment
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        manifest = read_manifest(run)                # whole, whatever the moment
        state = load_checkpoint(ckpt)                # what resume_from does
        steps = read_steps(run / "metrics.jsonl")
        assert state["position"]["step"] <= max(steps) + 1
        read_jsonl(run / "norms" / "agent_decisions.jsonl")
        assert manifest["status"] in ("running", "done")
        resumable += 1
    assert resumable == TRIALS
