"""What `nora verify` costs against the training it verifies, and what its records cost.

1. Audit records: the same supervised run (`--record-epochs 20`, 460 steps) with checkpoints
   kept every `--every 50` steps (as the verified run below keeps them) and a two-level
   parameter hash every step ("on") against neither ("off"), alternating, `--record-reps`
   pairs in one process: the median of the pairs' wall-time ratios (target <= 1.05) and the
   bytes kept.
2. Verify: one run long enough that start-up does not dominate: `--epochs 250` of the digits
   CNN is 5,750 steps, about 100-120 s of training on a quiet 2-core machine (the issue asks
   for a minute or more), with a checkpoint kept every `--every 50` steps (115
   segments: the 5% budget replays the first, the last and 3 drawn at random, 250 steps).
   Then `python -m nora verify RUN --budget 0.05 -j 2` as a user types it (a fresh
   interpreter, cold templates), `--reps` times with different draw seeds: median
   verification wall time over the run's recorded training time (target <= 0.10), and the
   median of what the verification record says of its parts (static audit, replays).
Run by hand: `.venv/bin/python benchmarks/bench_verify.py [--epochs 250] [--reps 3]`.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nora

ROOT = Path(__file__).resolve().parents[1]


def train(root: str, name: str, epochs: int, every: int) -> tuple[float, Path]:
    hashes = 1 if every else 0
    config = nora.load_config([f"train.epochs={epochs}", f"train.checkpoint_every={every}",
                               f"repro.step_fingerprint_every={hashes}"])
    run = Path(root, name)
    t0 = time.perf_counter()
    nora.train(config, run_dir=run)
    return time.perf_counter() - t0, run


def size(run: Path) -> int:
    return sum(p.stat().st_size for p in run.rglob("*") if p.is_file())


def records_cost(root: str, reps: int, epochs: int, every: int) -> None:
    times: dict[str, list[float]] = {"off": [], "on": []}
    sizes: dict[str, int] = {}
    train(root, "warm", 1, every)
    for i in range(reps):
        for kind in (("off", "on") if i % 2 == 0 else ("on", "off")):
            t, run = train(root, f"{kind}{i}", epochs, every if kind == "on" else 0)
            times[kind].append(t)
            sizes[kind] = size(run)
    for kind, ts in times.items():
        print(f"records {kind:>3}: median {statistics.median(ts):.2f}s (min {min(ts):.2f}, max "
              f"{max(ts):.2f}, n={len(ts)}), run directory {sizes[kind] / 1e6:.2f} MB")
    print(f"audit records storage: +{(sizes['on'] - sizes['off']) / 1e6:.2f} MB "
          f"(checkpoints every {every} steps + per-step leaves)")
    # each pair ran back to back: its ratio cancels the machine's drift between pairs
    pairs = [on / off for on, off in zip(times["on"], times["off"])]
    print(f"per pair on/off: {', '.join(f'{r:.3f}' for r in pairs)}; ratio of medians "
          f"{statistics.median(times['on']) / statistics.median(times['off']):.3f}")
    print(f"audit records cost ratio: {statistics.median(pairs):.2f}")


def verify_cost(root: str, reps: int, epochs: int, every: int) -> None:
    _, run = train(root, "long", epochs, every)
    manifest = json.loads((run / "manifest.json").read_text())
    trained = manifest["duration_sec"]
    steps = len([1 for line in (run / "metrics.jsonl").read_text().splitlines()
                 if '"kind": "step"' in line])
    print(f"long run: {steps} steps, {trained:.1f}s of training, checkpoints every {every}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ratios, audits, replays = [], [], []
    for seed in range(reps):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "nora", "verify", str(run), "--budget",
                               "0.05", "-j", "2", "--seed", str(seed)], env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"verify exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        result = json.loads((run / "verification.json").read_text())
        ratios.append(wall / trained)
        audits.append(result["audit_seconds"])
        replays.append(result["seconds"] - result["audit_seconds"])
        print(f"verify seed {seed}: {wall:.1f}s wall ({result['audited_steps']}/"
              f"{result['total_steps']} steps in {len(result['segments'])} segments replayed; "
              f"in verify(): static audit {result['audit_seconds']:.1f}s, then "
              f"{replays[-1]:.1f}s until the last replay was compared)")
    print(f"verify parts (medians): static audit {statistics.median(audits):.2f}s, then "
          f"{statistics.median(replays):.2f}s of waiting for the replay interpreter and "
          "replaying; the rest of the wall time is the CLI importing torch and exiting")
    print(f"verify cost ratio: {statistics.median(ratios):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3, help="verify repetitions")
    parser.add_argument("--record-reps", type=int, default=9, help="records on/off pairs")
    parser.add_argument("--epochs", type=int, default=250, help="epochs of the long run")
    parser.add_argument("--record-epochs", type=int, default=20,
                        help="epochs per records run (460 steps)")
    parser.add_argument("--every", type=int, default=50,
                        help="train.checkpoint_every of the long run and the records runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        records_cost(root, args.record_reps, args.record_epochs, args.every)
        verify_cost(root, args.reps, args.epochs, args.every)


if __name__ == "__main__":
    main()
