"""``python -m nora``: train (with Hydra sweeps and launchers), replay, compare, report.

Exit codes: 0 done; 1 a verdict failed (replay, compare); 2 bad usage or invalid config;
3 halted by norm enforcement.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from nora.errors import ConfigError, NoraError

EXIT_OK, EXIT_VERDICT, EXIT_USAGE, EXIT_HALTED = 0, 1, 2, 3


def _expand(overrides: Sequence[str], multirun: bool) -> list[list[str]]:
    """Every job a sweep would run (hydra's own override grammar), for validation upfront."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"argument {ov!r} is not an override of the form key=value "
                              "(e.g. regime=strict) or --multirun")
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError(f"cannot parse overrides: {exc}") from None
    axes: list[list[str]] = []
    for ov in parsed:
        key = ov.get_key_element()
        if key.startswith("hydra."):
            continue
        if ov.is_sweep_override():
            if not multirun:
                raise ConfigError(f"{key}={ov.input_line.split('=', 1)[1]} sweeps several "
                                  "values; add --multirun to run them all")
            axes.append([f"{key}={v}" for v in ov.sweep_string_iterator()])
        else:
            axes.append([ov.input_line])
    return [list(job) for job in itertools.product(*axes)]


def _summarize_sweep(sweep_dir: Path) -> int:
    import pandas as pd

    from nora.records import read_json

    rows = []
    for job in sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                      key=lambda p: int(p.name)):
        m = read_json(job / "manifest.json") if (job / "manifest.json").exists() else {}
        cfg = m.get("config", {})
        rows.append({"job": job.name, "mode": cfg.get("mode", {}).get("name"),
                     "regime": cfg.get("regime", {}).get("name"),
                     "violation": cfg.get("violation", {}).get("name"), "seed": cfg.get("seed"),
                     "status": m.get("status", "missing"), "outcome": m.get("outcome"),
                     "fingerprint": (m.get("fingerprint") or "")[:12]})
    table = pd.DataFrame(rows)
    print(f"\nsweep {sweep_dir}:\n{table.to_string(index=False)}")
    statuses = set(table["status"]) if rows else {"missing"}
    if statuses - {"done", "halted"}:
        return EXIT_VERDICT
    return EXIT_HALTED if "halted" in statuses else EXIT_OK


def cmd_train(overrides: list[str], multirun: bool) -> int:
    import hydra
    from omegaconf import OmegaConf

    from nora.config.compose import check_overrides, load_config

    overrides = check_overrides(overrides, presets=False)   # mode= alias; empty run dir
    for job in _expand(overrides, multirun):
        load_config(job)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    keys = {o.split("=", 1)[0] for o in overrides}
    extra = [f"hydra.run.dir=runs/{stamp}", f"hydra.sweep.dir=runs/multirun_{stamp}",
             "hydra.job.name=train"]
    extra = [e for e in extra if e.split("=", 1)[0] not in keys]
    sweep_dir = Path(next(e for e in extra + overrides if e.startswith("hydra.sweep.dir="))
                     .split("=", 1)[1]) if multirun else None
    status: dict[str, int] = {}

    @hydra.main(config_path="pkg://nora.conf", config_name="config", version_base=None)
    def _task(cfg) -> None:
        status["code"] = _run_job(OmegaConf.to_container(cfg, resolve=True), multirun)

    sys.argv = ["nora", *overrides, *extra, *(["--multirun"] if multirun else [])]
    _task()
    if multirun:
        return _summarize_sweep(sweep_dir)
    return status.get("code", EXIT_VERDICT)


def _run_job(data: dict, multirun: bool) -> int:
    from hydra.core.hydra_config import HydraConfig

    from nora.config.compose import validate
    from nora.errors import NormViolationError
    from nora.runner import train

    data.pop("hydra", None)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    config = validate(data)
    try:
        result = train(config, run_dir=run_dir, progress=True)
    except NormViolationError as exc:
        print(f"[nora] HALTED: {exc}\n[nora] records: {run_dir}", file=sys.stderr)
        return EXIT_HALTED
    acc = result.metrics.get("accuracy", result.metrics.get("mean_return"))
    print(f"[nora] {config.mode.name}/{config.regime.name}/{config.violation.name} "
          f"seed={config.seed}: outcome={result.outcome} (expected {result.expected_outcome}), "
          f"decisions={len(result.decisions)}, final metric={acc}, "
          f"fingerprint={result.fingerprint}\n[nora] records: {run_dir}")
    return EXIT_OK


def cmd_replay(run_dir: str) -> int:
    from nora.replaying import replay

    verdict = replay(run_dir, progress=True)
    print(f"[nora] {verdict.message}\n[nora] replay records: {verdict.replay_dir}")
    return EXIT_OK if verdict.reproducible else EXIT_VERDICT


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nora", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train one run (or a sweep with --multirun)")
    p_train.add_argument("overrides", nargs="*", help="key=value, e.g. regime=strict")
    p_train.add_argument("--multirun", "-m", action="store_true",
                         help="sweep comma lists (regime=balanced,strict seed=1,2)")
    p_replay = sub.add_parser("replay", help="re-execute a run from its manifest")
    p_replay.add_argument("run_dir")
    p_cmp = sub.add_parser("compare", help="verdict, first divergent step and tensors")
    p_cmp.add_argument("runs", nargs=2)
    p_rep = sub.add_parser("report", help="aggregate runs / pytest reports")
    p_rep.add_argument("paths", nargs="+")
    p_rep.add_argument("--out", default=None, help="output folder (default reports/report-<time>)")
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args.overrides, args.multirun)
        if args.command == "replay":
            return cmd_replay(args.run_dir)
        if args.command == "compare":
            from nora.analysis.compare import main as compare_main
            return compare_main(args.runs)
        from nora.reporting import main as report_main
        return report_main(args.paths, args.out)
    except ConfigError as exc:
        print(f"nora: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NoraError as exc:
        print(f"nora: error: {exc}", file=sys.stderr)
        return EXIT_VERDICT
