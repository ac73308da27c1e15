"""Benchmark (not a timed test): what process isolation and fingerprinting cost.

1. Per-replica overhead of ``check_reproducible(..., isolation="process")`` against a plain
   fresh-interpreter rerun (``python -c`` importing torch and running the same training
   function), measured alternately in one run; target ratio <= 0.2.
2. Fingerprint throughput over a ~200 MB float32 state dict against a memory copy of the
   same state dict into preallocated tensors (``Tensor.copy_``: reading every byte once and
   writing it once, with no allocation or page faults), the fair baseline for a function that
   reads every byte once; target ratio >= 0.8. The ratio against ``Tensor.clone`` (an
   allocating copy, slowed by fresh pages) is printed as a secondary figure.

Run: ``PYTHONPATH=. python benchmarks/bench_isolation.py [--reps N] [--mb MB] [--threads N]
[--part all|isolation|fingerprint]``.
Torch's thread count is pinned (default 1) in this process, the replicas (which inherit it)
and the fresh interpreter alike: on a small shared machine, OpenMP threads waiting on each
other under load make every timing noise (a 3-step MLP took 300 ms with 2 threads here).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def train_small(seed: int) -> torch.nn.Module:
    """The replica's work: build a small model and optimizer, take a few steps."""
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(64, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_isolation(reps: int, runs: int) -> None:
    from nora.analysis.isolation import check_reproducible

    fresh_cmd = [sys.executable, "-c", f"import sys; sys.path.insert(0, {BENCH_DIR!r}); "
                 f"import torch; torch.set_num_threads({torch.get_num_threads()}); "
                 "import bench_isolation as b; b.train_small(0)"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))

    def fresh() -> None:
        subprocess.run(fresh_cmd, check=True, env=env)

    def process(parallel: bool) -> Callable[[], object]:
        return lambda: check_reproducible(train_small, seed=0, runs=runs, parallel=parallel)

    train_small(0)                                             # warm this process
    t_fn = statistics.median(_timed(lambda: train_small(0)) for _ in range(20))
    cold = _timed(process(False)) / runs                       # starts the templates
    fresh_t, seq_t, par_t = [], [], []
    for _ in range(reps):                                      # alternate, so drift hits all
        fresh_t.append(_timed(fresh))
        seq_t.append(_timed(process(False)) / runs)
        par_t.append(_timed(process(True)) / runs)
    fresh_over = statistics.median(fresh_t) - t_fn
    seq_over = statistics.median(seq_t) - t_fn
    par_over = statistics.median(par_t) - t_fn
    print(f"cpu cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
          f"reps: {reps}, replicas per check: {runs}")
    print(f"train_small in process (warm): {t_fn * 1e3:.1f} ms")
    print(f"fresh-interpreter rerun: {statistics.median(fresh_t):.3f} s per run "
          f"(min {min(fresh_t):.3f}, max {max(fresh_t):.3f})")
    print(f"isolation='process', sequential: {statistics.median(seq_t) * 1e3:.1f} ms per replica "
          f"(min {min(seq_t) * 1e3:.1f}, max {max(seq_t) * 1e3:.1f})")
    print(f"isolation='process', parallel:   {statistics.median(par_t) * 1e3:.1f} ms per replica")
    print(f"first call, templates cold:      {cold:.3f} s per replica")
    print(f"isolation overhead ratio: {seq_over / fresh_over:.2f}")
    print(f"  (parallel replicas: {par_over / fresh_over:.2f}; cold first call: "
          f"{(cold - t_fn) / fresh_over:.2f})")


def bench_fingerprint(reps: int, mb: int) -> None:
    from nora.hashing import fingerprint, tensor_hashes

    numel = 1 << 20                                            # 4 MiB float32 tensors
    g = torch.Generator().manual_seed(0)
    state = {f"layer{i}.weight": torch.randn(numel, generator=g) for i in range(mb // 4)}
    nbytes = sum(t.numel() * t.element_size() for t in state.values())

    def copy() -> None:
        {k: v.clone() for k, v in state.items()}

    dst = {k: torch.empty_like(v) for k, v in state.items()}

    def copy_into() -> None:                                   # no allocation, no page faults
        for k, v in state.items():
            dst[k].copy_(v)

    fp_t, th_t, copy_t, into_t = [], [], [], []
    fingerprint(state), copy(), copy_into()                    # warm caches and allocator
    for _ in range(reps):
        copy_t.append(_timed(copy))
        fp_t.append(_timed(lambda: fingerprint(state)))
        into_t.append(_timed(copy_into))
        th_t.append(_timed(lambda: tensor_hashes(state)))
    gbs = lambda ts: nbytes / statistics.median(ts) / 1e9      # noqa: E731
    print(f"state dict: {len(state)} float32 tensors, {nbytes / 1e6:.0f} MB, reps: {reps}")
    print(f"copy into preallocated (copy_): {gbs(into_t):.2f} GB/s  (the baseline)")
    print(f"allocating copy (clone):        {gbs(copy_t):.2f} GB/s")
    print(f"fingerprint(state):             {gbs(fp_t):.2f} GB/s")
    print(f"tensor_hashes(state):           {gbs(th_t):.2f} GB/s")
    print(f"  (against clone, an allocating copy: {gbs(fp_t) / gbs(copy_t):.2f})")
    print(f"fingerprint bandwidth ratio: {gbs(fp_t) / gbs(into_t):.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--runs", type=int, default=2, help="replicas per check")
    parser.add_argument("--mb", type=int, default=200, help="state dict size for fingerprinting")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, everywhere")
    parser.add_argument("--part", choices=["all", "isolation", "fingerprint"], default="all")
    ns = parser.parse_args(argv)
    torch.set_num_threads(ns.threads)
    if ns.part in ("all", "isolation"):
        bench_isolation(ns.reps, ns.runs)
    if ns.part in ("all", "fingerprint"):
        bench_fingerprint(ns.reps, ns.mb)


if __name__ == "__main__":
    # fn must be importable by name in the replicas, so run this file as module bench_isolation
    sys.path.insert(0, BENCH_DIR)
    import bench_isolation

    bench_isolation.main()
