"""config -> context + trainer + monitor + agent -> RunResult, every record written on the way.

This trains in the current process; ``nora.launcher`` decides between here and DDP ranks."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from nora.agent.outcomes import (actual_outcome, case_violation, configured_violations,
                                 expected_outcome)
from nora.config.schema import ConfigChange, RunConfig
from nora.context import RunContext
from nora.devices import resolve_device
from nora.errors import NormViolationError
from nora.hashing import fingerprint_and_hashes
from nora.reader import checkpoint_records
from nora.records import commit, durability, environment, write_json, write_temp
from nora.registry import load
from nora.run import Run
from nora.seeding import apply_threads, derive_seed, entropy_seed, seed_everything
from nora.tracking import require as require_tracker
from nora.trainers.shards import current_rank
from nora.violations import runtime_names


@dataclass
class RunResult:
    """What one run produced; ``outcome`` is read from its decisions."""

    config: RunConfig
    run_dir: Path
    status: str
    fingerprint: str | None
    losses: list[float]
    metrics: dict[str, Any]
    evals: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    changes: list[ConfigChange]
    outcome: str
    expected_outcome: str
    false_positives: int
    state: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)


def new_run_dir(root: str | Path = "runs") -> Path:
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    path = Path(root) / stamp
    path.mkdir(parents=True, exist_ok=False)
    return path


def _start(run: Run, ctx: RunContext, start_settings: dict[str, Any] | None) -> None:
    """Set the seams: broken by the run's violation, or as recorded (replay)."""
    if start_settings is None:
        run.violation.inject(ctx)
    else:
        ctx.apply_settings(start_settings)
        ctx.precision.skip_next = False  # a scaler enabled before this start skips nothing
        for change in run.config.replay_changes:
            if change.event == "startup":
                run.apply_change(change)
    ctx.apply_determinism()


def _manifest(run: Run, ctx: RunContext, status: str, extra: dict[str, Any]) -> dict[str, Any]:
    g = ctx.generators
    return {
        "status": status,
        "config": run.config.model_dump(mode="json"),
        "config_changes": [c.model_dump(mode="json") for c in run.changes],
        "seeds": {"config_seed": run.config.seed, "seeded": g.source == "config",
                  "effective_seed": ctx.seed, "source": g.source,
                  "entropy_seed": ctx.seed if g.source == "entropy" else None,
                  "streams": dict(g.provenance)},
        "determinism": {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                        "cudnn_benchmark": torch.backends.cudnn.benchmark,
                        "cudnn_deterministic": torch.backends.cudnn.deterministic,
                        "loader_workers": ctx.loader.workers,
                        "loader_in_order": ctx.loader.in_order},
        **_checkpoint_fields(run),   # as save_checkpoint keeps them in the manifest
        **extra,
    }


def _checkpoint_fields(run: Run) -> dict[str, Any]:
    """``checkpoints`` (and ``checkpoints_pending`` while a save is switching files) as
    ``nora.checkpoint.save_checkpoint`` keeps them in the manifest on disk, which a kill in
    the middle of a save leaves right; the run's own notes fill in the rest."""
    on_disk = checkpoint_records(run.run_dir)
    fields: dict[str, Any] = {"checkpoints": {**run.checkpoints, **on_disk["checkpoints"]}}
    if on_disk["checkpoints_pending"]:
        fields["checkpoints_pending"] = on_disk["checkpoints_pending"]
    return fields


def _norm_records(run: Run, outcome: str, expected: str, fp: str | None) -> tuple[dict, dict, int]:
    decisions, injected = run.decisions, run.config.violation.name
    actions = [d["agent_action"] for d in decisions]
    agent_metrics = {
        "total_decisions": len(decisions),
        "auto_fixes": actions.count("auto_fix"),
        "halts": actions.count("halt"),
        "warnings": actions.count("tolerate"),
        "logs": actions.count("log"),
        "adjustments": actions.count("adjust"),
        "remediation_success_count": run.agent.remediation_success if run.agent else 0,
        "regime": run.config.regime.name,
        "mode": run.config.mode.name,
    }
    findings = run.findings
    hits = [f for f in findings if f["violation"] == injected]
    false_pos = sum(f["false_positive"] is True for f in findings)
    severity: dict[str, int] = {}
    for f in findings:
        severity[f["severity"]] = severity.get(f["severity"], 0) + 1
    inj = [] if injected == "none" else [injected]
    repro = {
        "violations_injected": inj,
        "violations_present": sorted(configured_violations(run.config)),
        "violations_detected": len({f["violation"] for f in findings}),
        "findings": [{k: v for k, v in f.items() if k != "time_sec"} for f in findings],
        "detection_rate_pct": (100.0 * bool(hits)) if inj else None,
        "avg_time_to_detection_sec": (sum(f["time_sec"] for f in hits) / len(hits)) if hits else None,
        "first_detection_step": hits[0]["step"] if hits else None,
        "severity_breakdown": severity,
        "false_positives": false_pos,
        "occurrences": dict(run.occurrences),
        "runtime_violation": injected in runtime_names(),
        "outcome": outcome,
        "expected_outcome": expected,
        "fingerprint": fp,
        "verdicts": {},
    }
    return agent_metrics, repro, false_pos


def train(config: RunConfig, *, run_dir: str | Path | None = None, progress: bool = False,
          start_settings: dict[str, Any] | None = None) -> RunResult:
    """Run one training here, from a validated config; raises NormViolationError on a halt.

    ``start_settings`` sets the seams as a recorded run had them (replay); otherwise the
    config's violation is injected. A DDP rank calls this too, inside its process group.
    Its records are written as durably as ``config.durable`` says.
    """
    with durability(config.durable):
        return _train(config, run_dir, progress, start_settings)


def _train(config: RunConfig, run_dir: str | Path | None, progress: bool,
           start_settings: dict[str, Any] | None) -> RunResult:
    device = resolve_device(config.device)
    trainer_cls = load("trainer", config.trainer.name)
    require_tracker(config)
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    apply_threads(config.repro.torch_threads)
    run = Run(config, run_dir, controlled=trainer_cls.__module__.startswith("nora."))
    started = datetime.now().isoformat(timespec="seconds")
    env = environment(str(device))
    seed, source = (config.seed, "config") if config.seed is not None else (entropy_seed(),
                                                                           "entropy")
    ctx = RunContext(config, run_dir, device, seed=seed, seed_source=source,
                     progress=progress, observer=run)
    run.attach(ctx)
    _start(run, ctx, start_settings)
    base = {"env": env, "seams_at_start": ctx.settings(), "started_at": started,
            "resumed_from": config.resume_from, "trainer_class": _qualname(trainer_cls)}
    write_json(run_dir / "manifest.json", _manifest(run, ctx, "running", base))
    status, error, metrics, fp, state = "done", None, {}, None, {}
    trainer = None
    try:
        if run.agent is not None:
            run.emit("startup", {})
        run.event = "step"
        streams = ("global",) if config.ddp.world_size == 1 else ("global", current_rank())
        seed_everything(derive_seed(ctx.seed, *streams), deterministic=ctx.deterministic)
        ctx.apply_determinism()
        trainer = trainer_cls(ctx)
        if config.resume_from:
            base["resume_missing_parts"] = trainer.load(config.resume_from)
        base["dataset_fingerprint"] = getattr(trainer, "dataset_fingerprint", None)
        metrics = trainer.fit()
    except NormViolationError as exc:
        status, error = "halted", exc
    except BaseException as exc:   # Ctrl-C / SIGTERM mark the run interrupted
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        run.close()
        write_json(run_dir / "manifest.json", _manifest(run, ctx, status, base))
        raise
    finally:
        run.close()
    base["seams_at_end"] = ctx.settings()
    if trainer is not None and status == "done":
        state = trainer.final_state()
        fp, hashes = fingerprint_and_hashes(state)
        (run_dir / "state").mkdir(exist_ok=True)
        final = run_dir / "state" / "final.pt"
        commit(write_temp(final, lambda fh: torch.save(state, fh)), final)
        write_json(run_dir / "state" / "tensors.json", {"step": ctx.step, "hashes": hashes})
    cfg = config
    case = case_violation(cfg)
    expected = expected_outcome(cfg.mode.name, cfg.regime.name, case,
                                tolerance=cfg.regime.violation_tolerance)
    outcome = actual_outcome(case, run.decisions)
    agent_metrics, repro, false_pos = _norm_records(run, outcome, expected, fp)
    write_json(run_dir / "norms" / "agent_metrics.json", agent_metrics)
    write_json(run_dir / "norms" / "reproducibility_metrics.json", repro)
    base.update({"fingerprint": fp, "metrics": metrics, "outcome": outcome,
                 "finished_at": datetime.now().isoformat(timespec="seconds"),
                 "duration_sec": round(time.perf_counter() - run.t0, 3)})
    write_json(run_dir / "manifest.json", _manifest(run, ctx, status, base))
    if config.tracking.name != "none" and current_rank() == 0:
        from nora.tracking import log_run
        log_run(run_dir, config)
    result = RunResult(config=config, run_dir=run_dir, status=status, fingerprint=fp,
                       losses=list(run.losses), metrics=metrics, evals=list(run.evals),
                       decisions=list(run.decisions), changes=list(run.changes),
                       outcome=outcome, expected_outcome=expected,
                       false_positives=false_pos, state=state, findings=list(run.findings))
    if error is not None:
        error.result = result
        raise error
    return result


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"
