"""config -> trainer + monitor + agent -> RunResult, with every record written on the way."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from nora.agent.outcomes import actual_outcome, expected_outcome
from nora.config.schema import ConfigChange, RunConfig
from nora.devices import resolve_device
from nora.errors import NormViolationError
from nora.hashing import fingerprint, tensor_hashes
from nora.knobs import Knobs
from nora.preflight import preflight
from nora.reader import checkpoint_records
from nora.records import environment, write_json
from nora.run import Run
from nora.seeding import apply_threads, derive_seed, entropy_seed, seed_everything, set_determinism
from nora.trainers import make_trainer
from nora.trainers.shards import current_rank
from nora.violations import RUNTIME


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


def needs_group(config: RunConfig) -> bool:
    import torch.distributed as dist

    return (config.ddp.world_size > 1 and not config.ddp.emulate
            and not (dist.is_available() and dist.is_initialized()))


def new_run_dir(root: str | Path = "runs") -> Path:
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    path = Path(root) / stamp
    path.mkdir(parents=True, exist_ok=False)
    return path


def _start_knobs(run: Run, start_knobs: dict[str, Any] | None) -> None:
    """Set the run's effective settings: injected by its violation, or recorded (replay)."""
    if start_knobs is None:
        run.violation.inject(run)
        return
    values = dict(start_knobs)
    if not values.get("seeded", True):
        values["seed"] = entropy_seed()
    values["checkpoint_parts"] = tuple(values["checkpoint_parts"])
    run.knobs = Knobs(**values)
    for change in run.config.replay_changes:
        if change.event == "startup":
            run.apply_change(change)


def _manifest(run: Run, status: str, extra: dict[str, Any]) -> dict[str, Any]:
    k = run.knobs
    return {
        "status": status,
        "config": run.config.model_dump(mode="json"),
        "config_changes": [c.model_dump(mode="json") for c in run.changes],
        "seeds": {"config_seed": run.config.seed, "seeded": k.seeded,
                  "effective_seed": k.seed if k.seeded else None,
                  "streams": ["init", "order", "augment", "global", "env", "policy"]},
        "determinism": {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                        "cudnn_benchmark": torch.backends.cudnn.benchmark,
                        "cudnn_deterministic": torch.backends.cudnn.deterministic,
                        "loader_workers": k.loader_workers, "loader_in_order": k.loader_in_order},
        **_checkpoint_fields(run),   # errors-helper: the checksums save_checkpoint recorded
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
    detected = {d["violation"] for d in run.detections}
    hits = [d for d in run.detections if d["violation"] == injected]
    false_pos = len([d for d in run.detections if d["violation"] != injected])
    severity: dict[str, int] = {}
    for d in run.detections:
        severity[d["severity"]] = severity.get(d["severity"], 0) + 1
    inj = [] if injected == "none" else [injected]
    repro = {
        "violations_injected": inj,
        "violations_detected": len(detected),
        "detection_rate_pct": (100.0 * bool(hits)) if inj else None,
        "avg_time_to_detection_sec": (sum(d["time_sec"] for d in hits) / len(hits)) if hits else None,
        "first_detection_step": hits[0]["step"] if hits else None,
        "severity_breakdown": severity,
        "false_positives": false_pos,
        "occurrences": dict(run.occurrences),
        "runtime_violation": injected in RUNTIME,
        "outcome": outcome,
        "expected_outcome": expected,
        "fingerprint": fp,
        "verdicts": {},
    }
    return agent_metrics, repro, false_pos


def train(config: RunConfig, *, run_dir: str | Path | None = None, progress: bool = False,
          start_knobs: dict[str, Any] | None = None) -> RunResult:
    """Run one training from a validated config; raises NormViolationError on a halt.

    With ``ddp.world_size > 1`` (and no emulation) one process per rank is spawned, or
    torchrun's ranks are joined; rank 0 writes the records.
    """
    preflight(config)   # errors-helper: bad device / resume_from before any run dir exists
    if needs_group(config):
        from nora.trainers.distributed import train_distributed
        return train_distributed(config, run_dir=run_dir, progress=progress)
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    apply_threads(config.repro.torch_threads)
    run = Run(config, run_dir)
    started = datetime.now().isoformat(timespec="seconds")
    env = environment(str(device))
    _start_knobs(run, start_knobs)
    k = run.knobs
    set_determinism(k.deterministic, cudnn_benchmark=k.cudnn_benchmark)
    knobs_at_start = {key: v for key, v in k.to_dict().items() if key != "extra"}
    if not k.seeded:
        knobs_at_start.pop("seed")
    base = {"env": env, "knobs_at_start": knobs_at_start, "started_at": started,
            "resumed_from": config.resume_from}
    write_json(run_dir / "manifest.json", _manifest(run, "running", base))
    status, error, metrics, fp, state = "done", None, {}, None, {}
    try:
        if run.agent is not None:
            run.emit("startup")
        run.event = "step"
        streams = ("global",) if config.ddp.world_size == 1 else ("global", current_rank())
        seed_everything(derive_seed(k.seed, *streams), deterministic=k.deterministic)
        set_determinism(k.deterministic, cudnn_benchmark=k.cudnn_benchmark)
        run.trainer = make_trainer(run, device, progress=progress)
        run.total_steps = run.trainer.total_steps
        if config.resume_from:
            base["resume_missing_parts"] = run.trainer.load(config.resume_from)
        base["dataset_fingerprint"] = run.trainer.dataset_fingerprint
        metrics = run.trainer.fit()
    except NormViolationError as exc:
        status, error = "halted", exc
    except BaseException as exc:   # errors-helper: Ctrl-C / SIGTERM mark the run interrupted
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        run.close()
        write_json(run_dir / "manifest.json", _manifest(run, status, base))
        raise
    finally:
        run.close()
    if run.trainer is not None and status == "done":
        state = run.trainer.final_state()
        fp = fingerprint(state)
        (run_dir / "state").mkdir(exist_ok=True)
        torch.save(state, run_dir / "state" / "final.pt")
        write_json(run_dir / "state" / "tensors.json", {"step": run.step,
                                                        "hashes": tensor_hashes(state)})
    cfg = config
    expected = expected_outcome(cfg.mode.name, cfg.regime.name, cfg.violation.name,
                                tolerance=cfg.regime.violation_tolerance)
    outcome = actual_outcome(cfg.violation.name, run.decisions)
    agent_metrics, repro, false_pos = _norm_records(run, outcome, expected, fp)
    write_json(run_dir / "norms" / "agent_metrics.json", agent_metrics)
    write_json(run_dir / "norms" / "reproducibility_metrics.json", repro)
    base.update({"fingerprint": fp, "metrics": metrics, "outcome": outcome,
                 "finished_at": datetime.now().isoformat(timespec="seconds"),
                 "duration_sec": round(time.perf_counter() - run.t0, 3)})
    write_json(run_dir / "manifest.json", _manifest(run, status, base))
    result = RunResult(config=config, run_dir=run_dir, status=status, fingerprint=fp,
                       losses=list(run.losses), metrics=metrics, evals=list(run.evals),
                       decisions=list(run.decisions), changes=list(run.changes),
                       outcome=outcome, expected_outcome=expected,
                       false_positives=false_pos, state=state)
    if error is not None:
        error.result = result
        raise error
    return result
