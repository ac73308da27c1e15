"""A DDP hang is silence, not length: a healthy group runs past ``timeout_s`` (heartbeats or
CPU time show progress); a rank stopped by ``SIGSTOP`` is named soon after ``timeout_s`` of
silence; and after any failure no rank process, no scratch directory and no ``running``
manifest is left behind."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import nora
from nora.ddp import GroupError, heartbeat, run_group

from .test_ddp import _gone

TIMEOUT_S = 1.5


# --- rank functions (module level: ranks import them by name) ---------------------------
def busy_or_beating(rank, world_size, seconds):
    """Rank 0 computes without a heartbeat (its CPU time is its progress); rank 1 sleeps in
    short naps and calls heartbeat() (its only sign of life). Both outlast the timeout."""
    end = time.monotonic() + seconds
    x = torch.ones(64, 64)
    while time.monotonic() < end:
        if rank == 0:
            x = (x @ x).clamp_(-1, 1)
        else:
            time.sleep(0.2)
            heartbeat()
    t = torch.ones(1)
    dist.all_reduce(t)
    return t.item()


def _scratch() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("nora-rank*"))


def _assert_nothing_left(pids, scratch_before: set[Path]) -> None:
    deadline = time.monotonic() + 5
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids and all(_gone(p) for p in pids), "a rank process survived"
    assert not [c for c in mp.active_children() if c.name.startswith("nora-ddp-rank")]
    left = _scratch() - scratch_before
    assert not left, f"a rank's scratch directory was left behind: {left}"


def _rank_pid(rank: int, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in mp.active_children():
            if child.name == f"nora-ddp-rank{rank}" and child.pid:
                return child.pid
        time.sleep(0.02)
    raise AssertionError(f"rank {rank} never started")


def _signal_mid_run(run_dir: Path, rank: int, sig: int, out: dict) -> None:
    """Once the run has recorded a few steps, send ``sig`` to ``rank`` by its pid."""
    pid = _rank_pid(rank)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    out["pid"], out["at"] = pid, time.monotonic()
    os.kill(pid, sig)


def _ddp_config(epochs: int):
    return nora.load_config(["ddp.world_size=2", f"ddp.timeout_s={TIMEOUT_S}",
                             f"train.epochs={epochs}", "trainer.train_subset=512"])


# --- tests ------------------------------------------------------------------------------
def test_a_group_that_outlasts_the_timeout_completes_while_it_shows_progress():
    t0 = time.monotonic()
    out = run_group(busy_or_beating, 2, backend="gloo", timeout_s=1.0, args=(3.0,))
    assert out == [2.0, 2.0]
    assert time.monotonic() - t0 > 3.0


def test_a_healthy_ddp_run_longer_than_ddp_timeout_completes(tmp_path):
    before = _scratch()
    result = nora.train(_ddp_config(epochs=40), run_dir=tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert result.status == "done" and manifest["status"] == "done"
    assert manifest["duration_sec"] > TIMEOUT_S, "the run must outlast the timeout"
    assert not _scratch() - before


def stop_or_kill_rank_mid_run(tmp: Path, rank: int, sig: int) -> tuple[GroupError, float]:
    """Train on two ranks, ``sig`` one rank mid-run; the error and seconds until it came."""
    run_dir = tmp / f"run-{rank}-{sig}"
    hit: dict = {}
    t = threading.Thread(target=_signal_mid_run, args=(run_dir, rank, sig, hit), daemon=True)
    before = _scratch()
    t.start()
    with pytest.raises(GroupError) as info:
        nora.train(_ddp_config(epochs=400), run_dir=run_dir)
    assert "at" in hit, f"the group failed before the fault was injected: {info.value}"
    took = time.monotonic() - hit["at"]
    t.join(1)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed", manifest["status"]
    assert f"rank {rank}" in manifest["error"]
    _assert_nothing_left(info.value.pids, before)
    return info.value, took


def test_a_stopped_rank_is_named_soon_after_the_timeout(tmp_path):
    err, took = stop_or_kill_rank_mid_run(tmp_path, 1, signal.SIGSTOP)
    assert err.ranks == [1], str(err)
    assert "rank 1 hung" in str(err) and "stopped (SIGSTOP" in str(err)
    assert TIMEOUT_S <= took < TIMEOUT_S + 4, f"named {took:.1f} s after the stop"


@pytest.mark.slow
def test_twenty_stopped_or_killed_ranks_leave_nothing_behind(tmp_path):
    """20 trials: SIGSTOP or SIGKILL, rank 0 or rank 1, each mid-run."""
    times = {"SIGSTOP": [], "SIGKILL": []}
    for trial in range(20):
        rank, sig = trial % 2, (signal.SIGSTOP, signal.SIGKILL)[trial // 2 % 2]
        err, took = stop_or_kill_rank_mid_run(tmp_path / str(trial), rank, sig)
        assert err.ranks == [rank], str(err)
        if sig == signal.SIGSTOP:
            assert TIMEOUT_S <= took < TIMEOUT_S + 4, f"trial {trial}: {took:.1f} s"
        else:   # seen by its process sentinel, not by silence (reaping the peer may take
            assert f"rank {rank} died (killed by SIGKILL)" in str(err), str(err)  # a while)
        times[signal.Signals(sig).name].append(round(took, 2))
    print("seconds from the fault to the error:", times)
