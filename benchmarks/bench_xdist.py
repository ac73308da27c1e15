"""Wall time of the enforcement-matrix experiment with ``-n 0`` and ``-n 2``, alternating, in
one run; the speed-up, the plugin's own overhead per case, and whether both gave the same
results. Not a timed test: ``.venv/bin/python benchmarks/bench_xdist.py [--rounds 2]``.

Case sizes, each measured alternately: ``preset`` (the headline) runs every case as
``python -m nora train`` does by default (5 epochs on the 1,437 training digits); ``epoch``
is one epoch on the same data; ``ci`` keeps conftest.py's trim (one epoch on 256 images),
which the default suite uses to stay fast. Each xdist worker pays its own start-up once
(an interpreter, torch and torch._dynamo, the first Hydra composition: about 3 s here), so
the smaller the cases, the larger the share of that fixed cost.

Harness overhead per case = the test's setup+call+teardown time (junitxml) minus the time
the trainer spent in its own code (building its model, data and optimizer, ``fit()``,
``final_state()``), both measured in the same session: the plugin
``benchmarks/_fit_timer.py`` times those calls and adds them to the test's junitxml
properties. The rest is NORA's (and pytest's): config composition, the run's set-up and
records, the final fingerprint and state, the plugin's rows. The headline is the mean over
the cases of a ``-n 0`` session after its first: what one more case in a matrix costs. The
first case also pays the process's one-time start-up (torch._dynamo's import on the first
optimizer, the first composition, the data), printed on its own line.
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
BENCH = Path(__file__).resolve().parent
TARGET = "experiments/test_matrix.py"


def run_session(workers: int, out: Path, overrides: str = "", extra: str = "",
                root: Path = ROOT) -> dict:
    """One pytest session in a fresh process; its wall time, results and per-test times."""
    junit = out / f"junit-n{workers}.xml"
    cmd = [sys.executable, "-m", "pytest", TARGET, "-q", "-p", "no:randomly", "-p",
           "_fit_timer", "-n", str(workers), "--nora-report-dir",
           str(out / f"reports-n{workers}"), "--junitxml", str(junit)]
    if overrides:
        cmd += ["-o", f"nora_overrides={overrides}"]
    cmd += extra.split()
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(root), str(BENCH), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"pytest -n {workers} failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
    results = pd.read_csv(out / f"reports-n{workers}" / "latest" / "results.csv")
    times, fits, cpu = {}, {}, {}
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        props = [(p.get("name"), float(p.get("value"))) for p in case.iter("property")
                 if p.get("name", "").startswith("bench.")]
        times[name] = float(case.get("time"))
        fits[name] = sum(v for k, v in props if k == "bench.fit_sec")
        cpu[name] = (sum(v for k, v in props if k == "bench.test_cpu_sec")
                     - sum(v for k, v in props if k == "bench.fit_cpu_sec"))
    if not any(fits.values()):
        sys.exit("no bench.fit_sec property in junitxml: was the _fit_timer plugin loaded?")
    return {"wall": wall, "results": results, "test_sec": sum(times.values()),
            "fit_sec": sum(fits.values()), "cases": len(times),
            "overheads": [times[n] - fits[n] for n in times], "cpu_overheads": list(cpu.values())}


def per_case(res: dict, workers: int) -> float:
    """NORA's mean time per case; with ``-n 0`` the cases after the process's first (whose
    extra is the one-time start-up), with xdist every case (each worker has a first)."""
    cases = res["overheads"][1:] if workers == 0 and res["cases"] > 1 else res["overheads"]
    return statistics.mean(cases)


def compose_seconds() -> tuple[float, float]:
    """Mean time of one ``nora.load_config`` for a matrix case (cached presets) and of
    Hydra's own composition of the same overrides, alternating, in this process."""
    import nora
    from nora.config import group_choices
    try:
        from nora.config.compose import compose_dict_hydra
    except ImportError:                        # a checkout from before the cached path
        from nora.config.compose import compose_dict as compose_dict_hydra

    nora.load_config(["train.epochs=1"])   # warm: the one Hydra check per process
    sets = [[f"modes={m}", f"regime={r}", f"violation={v}", "train.epochs=1"]
            for m in group_choices("modes") for r in group_choices("regime")
            for v in group_choices("violation")][:24]
    fast, hydra = 0.0, 0.0
    for ov in sets:
        t0 = time.perf_counter()
        nora.load_config(ov)
        t1 = time.perf_counter()
        compose_dict_hydra(ov)
        fast, hydra = fast + t1 - t0, hydra + time.perf_counter() - t1
    return fast / len(sets), hydra / len(sets)


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


def measure(label: str, overrides: str, rounds: int, pytest_args: str,
            workers_set: tuple[int, ...]) -> tuple[float | None, float]:
    """Alternating -n 0 / -n 2 sessions at one case size; prints the breakdown, returns
    the speed-up (None with one worker setting) and the harness overhead per case (s)."""
    print(f"-- {label}: {TARGET} {overrides or '(conftest.py sizes)'} {pytest_args}")
    walls: dict[int, list[float]] = {w: [] for w in workers_set}
    outside: dict[int, list[float]] = {w: [] for w in workers_set}
    harness: dict[int, list[float]] = {w: [] for w in workers_set}   # per case, per session
    last: dict[int, dict] = {}
    identical = True
    with tempfile.TemporaryDirectory(prefix="nora-bench-") as tmp:
        for rnd in range(rounds):
            for workers in (workers_set if rnd % 2 == 0 else workers_set[::-1]):
                out = Path(tmp) / f"r{rnd}"
                out.mkdir(exist_ok=True)
                res = run_session(workers, out, overrides, pytest_args)
                walls[workers].append(res["wall"])
                outside[workers].append(res["wall"] - res["test_sec"] / max(workers, 1))
                harness[workers].append(per_case(res, workers))
                last[workers] = res
                print(f"round {rnd + 1}: -n {workers}: {res['wall']:6.1f} s wall, "
                      f"{res['cases']} cases, harness overhead per case "
                      f"{harness[workers][-1] * 1000:.1f} ms")
            if len(workers_set) == 2:
                identical &= same_results(last[0]["results"], last[2]["results"])
    base = min(workers_set)
    one = last[base]
    cases = one["cases"]
    in_train = one["results"]["duration_sec"].sum()
    test, fit = one["test_sec"] / cases, one["fit_sec"] / cases
    print(f"per case (-n {base}, last round): test {test * 1000:.1f} ms = trainer fit() "
          f"{fit * 1000:.1f} ms + NORA {(test - fit) * 1000:.1f} ms (in nora.train around "
          f"fit {(in_train / cases - fit) * 1000:.1f} ms, around nora.train "
          f"{(test - in_train / cases) * 1000:.1f} ms)")
    wall, cpu = one["overheads"], one["cpu_overheads"]
    print(f"NORA per case (-n {base}, last round), wall: mean of all cases "
          f"{statistics.mean(wall) * 1e3:.1f} ms, median {statistics.median(wall) * 1e3:.1f}"
          f" ms, first case {wall[0] * 1e3:.0f} ms (the process's one-time imports and "
          f"caches); CPU of this process: mean {statistics.mean(cpu) * 1e3:.1f} ms, median "
          f"{statistics.median(cpu) * 1e3:.1f} ms, first case {cpu[0] * 1e3:.0f} ms")
    for w in workers_set:
        print(f"-n {w}: median wall {statistics.median(walls[w]):.1f} s; session outside "
              f"tests {statistics.median(outside[w]):.1f} s (interpreters, imports, "
              "collection, worker start and exit, report writing)")
    if len(workers_set) == 1:
        return None, statistics.median(harness[base])
    print(f"per case (-n 2): test {last[2]['test_sec'] / cases * 1000:.0f} ms (each worker "
          "pays its own first-case start-up: torch import, the first composition)")
    print(f"same cases, outcomes, decisions and seeded fingerprints with -n 0 and -n 2: "
          f"{'yes' if identical else 'NO'}")
    return statistics.median(walls[0]) / statistics.median(walls[2]), \
        statistics.median(harness[base])


def measure_against(baseline: Path, overrides: str, rounds: int, pytest_args: str) -> None:
    """-n 0 sessions of this checkout and of ``baseline`` (e.g. a checkout before a change),
    alternating: NORA's overhead per case in each, measured the same way in one run."""
    found: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="nora-bench-") as tmp:
        for rnd in range(rounds):
            order = [("baseline", baseline), ("this", ROOT)]
            for label, root in (order if rnd % 2 == 0 else order[::-1]):
                out = Path(tmp) / f"r{rnd}-{label}"
                out.mkdir()
                res = run_session(0, out, overrides, pytest_args, root=root)
                got = found.setdefault(label, {"wall": [], "median": [], "cpu": [],
                                               "cpu_median": []})
                got["wall"].append(per_case(res, 0))
                got["median"].append(statistics.median(res["overheads"]))
                got["cpu"].append(statistics.mean(res["cpu_overheads"]))
                got["cpu_median"].append(statistics.median(res["cpu_overheads"]))
                print(f"round {rnd + 1}: {label} ({root}): {res['cases']} cases, fit "
                      f"{res['fit_sec'] / res['cases'] * 1e3:.0f} ms per case; NORA per case: "
                      f"wall mean after the first case {got['wall'][-1] * 1e3:.1f} ms, median case "
                      f"{got['median'][-1] * 1e3:.1f} ms; CPU mean {got['cpu'][-1] * 1e3:.1f}"
                      f" ms, median case {got['cpu_median'][-1] * 1e3:.1f} ms, first case "
                      f"{res['cpu_overheads'][0] * 1e3:.0f} ms")
    for label in ("baseline", "this"):
        med = {k: statistics.median(v) * 1e3 for k, v in found[label].items()}
        print(f"{label}: NORA per case, medians over rounds: wall mean {med['wall']:.1f} ms, "
              f"median case {med['median']:.1f} ms; CPU mean {med['cpu']:.1f} ms, median case "
              f"{med['cpu_median']:.1f} ms")
    print(f"baseline harness overhead per case ms: "
          f"{statistics.median(found['baseline']['wall']) * 1e3:.1f}")
    print(f"harness overhead per case ms: {statistics.median(found['this']['wall']) * 1e3:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating -n 0 / -n 2 pairs")
    parser.add_argument("--sizes", default="preset,ci",
                        help=f"case sizes to measure, of {', '.join(SIZES)} (headline: first)")
    parser.add_argument("--overrides", default=None, metavar="'K=V ...'",
                        help="measure this one custom case size instead of --sizes")
    parser.add_argument("--workers", default="0,2", choices=["0,2", "0"],
                        help="'0' measures the harness overhead alone (no xdist speed-up)")
    parser.add_argument("--baseline-root", default=None, metavar="PATH",
                        help="compare NORA's overhead per case with another checkout (-n 0, "
                             "alternating), e.g. one before a change; measures --sizes' first")
    parser.add_argument("--pytest-args", default="", metavar="'ARGS'",
                        help="more pytest arguments for both sessions, e.g. "
                             "'-p no:hypothesispytest' to leave out that plugin's fixed cost")
    args = parser.parse_args()
    sizes = {"custom": args.overrides} if args.overrides is not None else {}
    for name in ([] if sizes else args.sizes.split(",")):
        if name not in SIZES:
            sys.exit(f"--sizes: unknown size {name!r}; valid choices: {', '.join(SIZES)}")
        sizes[name] = SIZES[name]()
    if args.baseline_root:
        measure_against(Path(args.baseline_root).resolve(), next(iter(sizes.values())),
                        args.rounds, args.pytest_args)
        return
    workers_set = tuple(int(w) for w in args.workers.split(","))
    print(f"machine: {os.cpu_count()} CPU(s); {args.rounds} round(s) per size, alternating")
    measured = {name: measure(name, ov, args.rounds, args.pytest_args, workers_set)
                for name, ov in sizes.items()}
    fast, hydra = compose_seconds()
    print(f"one nora.load_config of a matrix case: {fast * 1000:.2f} ms (presets cached once "
          f"per process); Hydra's composition of the same: {hydra * 1000:.0f} ms")
    for name, (ratio, overhead) in measured.items():
        speed = f"speed-up {ratio:.2f}, " if ratio is not None else ""
        print(f"size {name}: {speed}harness overhead per case {overhead * 1000:.1f} ms")
    headline = "ci" if "ci" in measured else next(iter(measured))
    print(f"harness overhead per case ms: {measured[headline][1] * 1000:.1f}")
    ratio = next(iter(measured.values()))[0]
    if ratio is not None:
        print(f"xdist speed-up ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
