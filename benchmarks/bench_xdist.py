"""Wall time of the enforcement-matrix experiment with ``-n 0`` and ``-n 2``, alternating, in
one run; the speed-up, the plugin's own overhead per case, and whether both gave the same
results. Not a timed test: ``.venv/bin/python benchmarks/bench_xdist.py [--rounds 2]``.

Case sizes, each measured alternately: ``preset`` (the headline) runs every case as
``python -m nora train`` does by default (5 epochs on the 1,437 training digits); ``epoch``
is one epoch on the same data; ``ci`` keeps conftest.py's trim (one epoch on 256 images),
which the default suite uses to stay fast. Each xdist worker pays its own start-up once
(an interpreter, torch and torch._dynamo, the first Hydra composition: about 3 s here), so
the smaller the cases, the larger the share of that fixed cost.

Overhead per case = the test's setup+call+teardown time (junitxml) minus the time spent in
``nora.train`` (``duration_sec`` in results.csv); config composition (Hydra, in the core) is
measured apart, since it is part of that difference but not the plugin's doing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
TARGET = "experiments/test_matrix.py"


def run_session(workers: int, out: Path, overrides: str = "", extra: str = "") -> dict:
    """One pytest session in a fresh process; its wall time, results and per-test times."""
    junit = out / f"junit-n{workers}.xml"
    cmd = [sys.executable, "-m", "pytest", TARGET, "-q", "-p", "no:randomly", "-n",
           str(workers), "--nora-report-dir", str(out / f"reports-n{workers}"),
           "--junitxml", str(junit)]
    if overrides:
        cmd += ["-o", f"nora_overrides={overrides}"]
    cmd += extra.split()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"pytest -n {workers} failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
    results = pd.read_csv(out / f"reports-n{workers}" / "latest" / "results.csv")
    times = {f"{c.get('classname')}::{c.get('name')}": float(c.get("time"))
             for c in ET.parse(junit).iter("testcase")}
    return {"wall": wall, "results": results, "test_sec": sum(times.values()),
            "cases": len(times)}


def compose_seconds() -> float:
    """Mean time of one ``nora.load_config`` for a matrix case, in this process."""
    import nora
    from nora.config import group_choices

    nora.load_config(["train.epochs=1"])   # warm
    sets = [[f"modes={m}", f"regime={r}", f"violation={v}", "train.epochs=1"]
            for m in group_choices("modes") for r in group_choices("regime")
            for v in group_choices("violation")][:24]
    t0 = time.perf_counter()
    for ov in sets:
        nora.load_config(ov)
    return (time.perf_counter() - t0) / len(sets)


def same_results(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Same cases, outcomes and decisions; same fingerprints wherever the run was seeded."""
    cols = ["test_id", "seed", "expected_outcome", "outcome", "decisions", "decision_actions"]
    if not a[cols].equals(b[cols]):
        return False
    random_by_design = a["violation"].isin(["missing_seed", "nondeterminism_enabled"]) & \
        a["outcome"].isin(["undetected", "logged"])
    return a.loc[~random_by_design, "fingerprint"].equals(b.loc[~random_by_design, "fingerprint"])


def preset_size() -> str:
    """Overrides that undo conftest.py's CI trim: each case as ``python -m nora train``
    runs it by default (the supervised preset's epochs and data)."""
    import nora

    config = nora.load_config([])
    subset = config.trainer.train_subset
    return (f"train.epochs={config.train.epochs} "
            f"trainer.train_subset={'null' if subset is None else subset}")


SIZES = {
    "preset": preset_size,                                          # the headline
    "epoch": lambda: "train.epochs=1 trainer.train_subset=null",    # real data, one epoch
    "ci": lambda: "",                                               # conftest.py's trim
}


def measure(label: str, overrides: str, rounds: int, pytest_args: str) -> float:
    """Alternating -n 0 / -n 2 sessions at one case size; prints the breakdown, returns
    the speed-up."""
    print(f"-- {label}: {TARGET} {overrides or '(conftest.py sizes)'} {pytest_args}")
    walls: dict[int, list[float]] = {0: [], 2: []}
    outside: dict[int, list[float]] = {0: [], 2: []}   # wall minus a worker's share of tests
    last: dict[int, dict] = {}
    identical = True
    with tempfile.TemporaryDirectory(prefix="nora-bench-") as tmp:
        for rnd in range(rounds):
            for workers in ((0, 2) if rnd % 2 == 0 else (2, 0)):
                out = Path(tmp) / f"r{rnd}"
                out.mkdir(exist_ok=True)
                res = run_session(workers, out, overrides, pytest_args)
                walls[workers].append(res["wall"])
                outside[workers].append(res["wall"] - res["test_sec"] / max(workers, 1))
                last[workers] = res
                print(f"round {rnd + 1}: -n {workers}: {res['wall']:6.1f} s wall, "
                      f"{res['cases']} cases")
            identical &= same_results(last[0]["results"], last[2]["results"])
    one, two = last[0], last[2]
    cases = one["cases"]
    train = one["results"]["duration_sec"].sum()
    overhead = (one["test_sec"] - train) / cases
    med0, med2 = statistics.median(walls[0]), statistics.median(walls[2])
    print(f"-n 0 median wall: {med0:.1f} s; -n 2 median wall: {med2:.1f} s")
    print(f"per case (-n 0): test {one['test_sec'] / cases * 1000:.0f} ms, in nora.train "
          f"{train / cases * 1000:.0f} ms, harness overhead {overhead * 1000:.0f} ms")
    print(f"per case (-n 2): test {two['test_sec'] / cases * 1000:.0f} ms (each worker pays "
          "its own first-case start-up: torch import, first Hydra composition)")
    print(f"session outside tests: -n 0 {statistics.median(outside[0]):.1f} s, -n 2 "
          f"{statistics.median(outside[2]):.1f} s (interpreters, imports, collection, worker "
          "start and exit, report writing)")
    print(f"same cases, outcomes, decisions and seeded fingerprints with -n 0 and -n 2: "
          f"{'yes' if identical else 'NO'}")
    return med0 / med2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating -n 0 / -n 2 pairs")
    parser.add_argument("--sizes", default="preset,ci",
                        help=f"case sizes to measure, of {', '.join(SIZES)} (headline: first)")
    parser.add_argument("--overrides", default=None, metavar="'K=V ...'",
                        help="measure this one custom case size instead of --sizes")
    parser.add_argument("--pytest-args", default="", metavar="'ARGS'",
                        help="more pytest arguments for both sessions, e.g. "
                             "'-p no:hypothesispytest' to leave out that plugin's fixed cost")
    args = parser.parse_args()
    sizes = {"custom": args.overrides} if args.overrides is not None else {}
    for name in ([] if sizes else args.sizes.split(",")):
        if name not in SIZES:
            sys.exit(f"--sizes: unknown size {name!r}; valid choices: {', '.join(SIZES)}")
        sizes[name] = SIZES[name]()
    print(f"machine: {os.cpu_count()} CPU(s); {args.rounds} round(s) per size, alternating")
    ratios = {name: measure(name, ov, args.rounds, args.pytest_args)
              for name, ov in sizes.items()}
    print(f"one nora.load_config (the core's Hydra composition, once per case) takes "
          f"{compose_seconds() * 1000:.0f} ms here")
    for name, ratio in ratios.items():
        print(f"speed-up at size {name}: {ratio:.2f}")
    print(f"xdist speed-up ratio: {next(iter(ratios.values())):.2f}")


if __name__ == "__main__":
    main()
