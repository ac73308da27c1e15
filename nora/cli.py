"""``python -m nora``: train (with Hydra sweeps and launchers), replay, compare, report.

Exit codes: 0 done; 1 a verdict failed (replay, compare); 2 bad usage or invalid config;
3 halted by norm enforcement.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from nora.errors import ConfigError, NoraError

EXIT_OK, EXIT_VERDICT, EXIT_USAGE, EXIT_HALTED = 0, 1, 2, 3
log = logging.getLogger("nora")
# Hydra logs to the console and to <run>/train.log; the console gets the short form
_CONSOLE_LOG = ["++hydra.job_logging.formatters.brief.format='[nora] %(message)s'",
                "hydra.job_logging.handlers.console.formatter=brief"]


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


def cmd_train(overrides: list[str], multirun: bool, cfg: str | None = None) -> int:
    import hydra
    from omegaconf import OmegaConf

    from nora.config.compose import check_overrides, load_config

    overrides = check_overrides(overrides, presets=False)   # mode= alias; empty run dir
    if cfg == "job":
        from nora.cli_help import composed_yaml
        print(composed_yaml(_expand(overrides, multirun)), end="")
        return EXIT_OK
    for job in _expand(overrides, multirun):
        load_config(job)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    keys = {o.split("=", 1)[0] for o in overrides}
    extra = [f"hydra.run.dir=runs/{stamp}", f"hydra.sweep.dir=runs/multirun_{stamp}",
             "hydra.job.name=train"]
    extra = [e for e in extra if e.split("=", 1)[0] not in keys]
    if not any("job_logging" in k for k in keys):
        extra += _CONSOLE_LOG
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
    from nora.launcher import train

    data.pop("hydra", None)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    for handler in logging.getLogger().handlers:    # Hydra's console handler, not its file
        if type(handler) is logging.StreamHandler and _not_file_only not in handler.filters:
            handler.addFilter(_not_file_only)
    config = validate(data)
    name = (f"{config.mode.name}/{config.regime.name}/{config.violation.name} "
            f"seed={config.seed}")
    log.info("%s: %s, %s epoch(s), device %s; records in %s", name, config.trainer.name,
             config.train.epochs, config.device, run_dir)
    try:
        result = train(config, run_dir=run_dir, progress=True)
    except NormViolationError as exc:
        _log_decisions(getattr(exc.result, "decisions", None) or [])
        log.error("HALTED: %s", exc, extra={"file_only": True})
        print(f"[nora] HALTED: {exc}\n[nora] records: {run_dir}", file=sys.stderr)
        return EXIT_HALTED
    _log_decisions(result.decisions)
    log.info("%s: outcome=%s (expected %s), decisions=%d, %s, fingerprint=%s", name,
             result.outcome, result.expected_outcome, len(result.decisions),
             _headline(result.metrics), result.fingerprint)
    log.info("records: %s", run_dir)
    return EXIT_OK


def _not_file_only(record: logging.LogRecord) -> bool:
    """Records marked ``file_only`` (already printed to stderr) go to train.log only."""
    return not getattr(record, "file_only", False)


def _headline(metrics: dict) -> str:
    """The run's main metric, named: ``accuracy=0.9722`` (``mean_return`` for PPO)."""
    for key in ("accuracy", "mean_return", "greedy_return"):
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            return f"{key}={value:.4f}"
    return "no final metric"


def _log_decisions(decisions: Sequence[dict]) -> None:
    for d in decisions:
        log.info("agent %s on %s at step %s: %s", d.get("agent_action"),
                 d.get("violation_name"), d.get("step"), d.get("message"))


def cmd_replay(run_dir: str) -> int:
    from nora.replaying import replay

    verdict = replay(run_dir, progress=True)
    print(f"[nora] {verdict.message}\n[nora] replay records: {verdict.replay_dir}")
    return EXIT_OK if verdict.reproducible else EXIT_VERDICT


class _TrainParser(argparse.ArgumentParser):
    """``train --help`` lists every config group's choices, read only when asked for."""

    def format_help(self) -> str:
        if self.prog.endswith(" train") and not self.epilog:
            from nora.cli_help import train_epilog
            self.epilog = train_epilog()
        return super().format_help()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m nora", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_TrainParser)
    p_train = sub.add_parser("train", help="train one run (or a sweep with --multirun)",
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    p_train.add_argument("overrides", nargs="*", help="key=value, e.g. regime=strict")
    p_train.add_argument("--multirun", "-m", action="store_true",
                         help="sweep comma lists (regime=balanced,strict seed=1,2); "
                              "anywhere among the overrides")
    p_train.add_argument("--cfg", choices=["job"], default=None,
                         help="print the composed config of each job and exit (no run)")
    p_replay = sub.add_parser("replay", help="re-execute a run from its manifest")
    p_replay.add_argument("run_dir")
    p_cmp = sub.add_parser("compare", help="verdict, first divergent step and tensors")
    p_cmp.add_argument("runs", nargs=2)
    p_rep = sub.add_parser("report", help="aggregate runs / pytest reports")
    p_rep.add_argument("paths", nargs="+")
    p_rep.add_argument("--out", default=None, help="output folder (default reports/report-<time>)")
    from nora import cli_hpo, cli_package, cli_verify
    extra = {"package": cli_package, "hpo": cli_hpo, "verify": cli_verify}
    for module in extra.values():
        module.add_parser(sub)
    if argv[:1] == ["train"]:    # options anywhere among the overrides, as Hydra allows
        args = p_train.parse_intermixed_args(argv[1:], argparse.Namespace(command="train"))
    else:
        args = parser.parse_args(argv)
    if args.command in extra:
        return extra[args.command].run(args)
    try:
        if args.command == "train":
            return cmd_train(args.overrides, args.multirun, args.cfg)
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
