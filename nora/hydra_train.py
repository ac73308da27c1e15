"""``python -m nora train``: one run or a sweep through Hydra (its launchers, its run dirs).

Everything that can be checked before training is checked before Hydra creates a run
directory (every job's config, its device, its ``resume_from`` checkpoint), so bad input
leaves nothing behind. Errors inside a job are caught in the job, so Hydra never prints its
"Error executing job" traceback: ``nora.cli`` reports them as one line.
"""
from __future__ import annotations

import itertools
import logging
import shutil
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from nora.errors import EXIT_FAILED, EXIT_HALTED, EXIT_OK, ConfigError, NoraError, one_line
from nora.preflight import preflight

_HYDRA_ONLY = {".hydra", "train.log"}      # what Hydra puts in a run dir before the job
log = logging.getLogger("nora")
# Hydra logs to the console and to <run>/train.log; the console gets the short form
_CONSOLE_LOG = ["++hydra.job_logging.formatters.brief.format='[nora] %(message)s'",
                "hydra.job_logging.handlers.console.formatter=brief"]


def expand(overrides: Sequence[str], multirun: bool) -> list[list[str]]:
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


def summarize_sweep(sweep_dir: Path) -> int:
    import pandas as pd

    from nora.reader import read_manifest

    rows = []
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()] \
        if sweep_dir.is_dir() else []
    for job in sorted(jobs, key=lambda p: int(p.name)):
        try:
            m = read_manifest(job)
        except NoraError:
            m = {"status": "missing", "config": {}}
        cfg = m["config"]
        rows.append({"job": job.name, **{k: (cfg.get(k) or {}).get("name")
                                         for k in ("mode", "regime", "violation")},
                     "seed": cfg.get("seed"), "status": m["status"], "outcome": m.get("outcome"),
                     "fingerprint": (m.get("fingerprint") or "")[:12]})
    table = pd.DataFrame(rows)
    print(f"\nsweep {sweep_dir}:\n{table.to_string(index=False)}")
    statuses = set(table["status"]) if rows else {"missing"}
    if statuses - {"done", "halted"}:
        return EXIT_FAILED
    return EXIT_HALTED if "halted" in statuses else EXIT_OK


def _discard_if_untouched(run_dir: Path, created: list[Path], usage_error: bool) -> None:
    """Remove a run dir an error left before training: Hydra's files only, or (for bad
    input found by the run itself) a manifest and no step recorded."""
    if not run_dir.is_dir():
        return
    names = {p.name for p in run_dir.iterdir()}
    metrics = run_dir / "metrics.jsonl"
    untrained = not metrics.exists() or metrics.stat().st_size == 0
    if names <= _HYDRA_ONLY or (usage_error and untrained):
        shutil.rmtree(run_dir, ignore_errors=True)
        for parent in created:                  # folders this command created, innermost first
            try:
                if parent.exists():
                    parent.rmdir()
            except OSError:
                break


def _missing_parents(path: Path) -> list[Path]:
    out = []
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        out.append(parent)
    return out


def cmd_train(overrides: list[str], multirun: bool, cfg: str | None = None) -> int:
    import hydra
    from omegaconf import OmegaConf

    from nora.config.compose import check_overrides, load_config

    overrides = check_overrides(overrides, presets=False)   # mode= alias; empty run dir
    if cfg == "job":
        from nora.cli_help import composed_yaml
        print(composed_yaml(expand(overrides, multirun)), end="")
        return EXIT_OK
    for job in expand(overrides, multirun):
        preflight(load_config(job))
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    keys = {o.split("=", 1)[0] for o in overrides}
    extra = [f"hydra.run.dir=runs/{stamp}", f"hydra.sweep.dir=runs/multirun_{stamp}",
             "hydra.job.name=train"]
    extra = [e for e in extra if e.split("=", 1)[0] not in keys]
    if not any("job_logging" in k for k in keys):
        extra += _CONSOLE_LOG
    sweep_dir = Path(next(e for e in extra + overrides if e.startswith("hydra.sweep.dir="))
                     .split("=", 1)[1]) if multirun else None
    created = _missing_parents(sweep_dir if multirun else Path(next(
        e for e in extra + overrides if e.startswith("hydra.run.dir=")).split("=", 1)[1]))
    state: dict[str, Any] = {}

    @hydra.main(config_path="pkg://nora.conf", config_name="config", version_base=None)
    def _task(cfg) -> None:
        state["code"] = _run_job(OmegaConf.to_container(cfg, resolve=True), multirun, created,
                                 state)

    sys.argv = ["nora", *overrides, *extra, *(["--multirun"] if multirun else [])]
    _task()
    if multirun:
        return summarize_sweep(sweep_dir)
    if "error" in state:
        raise state["error"]
    return state.get("code", EXIT_FAILED)


def _run_job(data: dict, multirun: bool, created: list[Path], state: dict[str, Any]) -> int:
    from hydra.core.hydra_config import HydraConfig

    from nora.config.compose import validate
    from nora.errors import NormViolationError
    from nora.launcher import train
    from nora.records import mark_stopped

    data.pop("hydra", None)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    state["run_dir"] = run_dir
    for handler in logging.getLogger().handlers:    # Hydra's console handler, not its file
        if type(handler) is logging.StreamHandler and _not_file_only not in handler.filters:
            handler.addFilter(_not_file_only)
    try:
        config = validate(data)
        name = (f"{config.mode.name}/{config.regime.name}/{config.violation.name} "
                f"seed={config.seed}")
        log.info("%s: %s, %s epoch(s), device %s; records in %s", name, config.trainer.name,
                 config.train.epochs, config.device, run_dir)
        result = train(config, run_dir=run_dir, progress=True)
    except NormViolationError as exc:
        _log_decisions(getattr(exc.result, "decisions", None) or [])
        log.error("HALTED: %s", exc, extra={"file_only": True})
        print(f"[nora] HALTED: {exc}\n[nora] records: {run_dir}", file=sys.stderr)
        return EXIT_HALTED
    except KeyboardInterrupt as exc:
        mark_stopped(run_dir, "interrupted")
        exc.run_dir = run_dir  # type: ignore[attr-defined]
        raise
    except Exception as exc:  # noqa: BLE001 - reported by nora.cli, not by Hydra
        mark_stopped(run_dir, "failed")
        usage = isinstance(exc, NoraError) and exc.exit_code == 2
        _discard_if_untouched(run_dir, [] if multirun else created, usage)
        if multirun and isinstance(exc, NoraError):
            print(f"nora: error: job {run_dir.name}: {one_line(str(exc))}", file=sys.stderr)
            return EXIT_FAILED
        if multirun:
            raise
        state["error"] = exc
        return EXIT_FAILED
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
