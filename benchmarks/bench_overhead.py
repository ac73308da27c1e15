"""Wall-time cost of the norm-aware agent on a clean supervised run.

Runs the same clean config in `pipeline` (no agent) and `norm_aware` mode, alternating,
several repetitions in one process, and prints the median ratio (target <= 1.05).
Run by hand: `.venv/bin/python benchmarks/bench_overhead.py [--reps 7] [--epochs 3]`.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import nora


def timed(mode: str, epochs: int, root: str, i: int) -> float:
    config = nora.load_config([f"modes={mode}", f"train.epochs={epochs}"])
    t0 = time.perf_counter()
    nora.train(config, run_dir=f"{root}/{mode}{i}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"pipeline": [], "norm_aware": []}
    with tempfile.TemporaryDirectory() as root:
        timed("pipeline", 1, root, -1)  # warm caches and imports
        for i in range(args.reps):
            order = ("pipeline", "norm_aware") if i % 2 == 0 else ("norm_aware", "pipeline")
            for mode in order:
                times[mode].append(timed(mode, args.epochs, root, i))
    for mode, ts in times.items():
        print(f"{mode:>10}: median {statistics.median(ts):.3f}s  "
              f"(min {min(ts):.3f}, max {max(ts):.3f}, n={len(ts)})")
    ratio = statistics.median(times["norm_aware"]) / statistics.median(times["pipeline"])
    print(f"norm_aware/pipeline wall-time ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
