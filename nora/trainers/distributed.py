"""A NORA run on ``ddp.world_size`` ranks: one process per rank (or torchrun's ranks).

Every rank runs the same run logic (so the monitor and agent decide alike everywhere);
rank 0 writes the run directory, the other ranks write to scratch directories under one
root that the launcher owns and removes whatever happens (a rank killed by ``SIGKILL`` runs
no cleanup of its own). A group that fails leaves its manifest marked ``failed`` (or
``interrupted`` on Ctrl-C), never ``running``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from nora.config.schema import RunConfig
from nora.errors import NormViolationError

SCRATCH_PREFIX = "nora-ranks-"


def _rank_main(rank: int, world_size: int, config_data: dict[str, Any], run_dir: str,
               progress: bool, scratch_root: str) -> dict[str, Any]:
    from nora.ddp import remove_if_launcher_dies
    from nora.runner import train

    config = RunConfig.model_validate(config_data)
    scratch = None
    if rank:
        remove_if_launcher_dies(scratch_root)
        scratch = os.path.join(scratch_root, f"rank{rank}")
    try:
        result = train(config, run_dir=run_dir if rank == 0 else scratch,
                       progress=progress and rank == 0)
        if rank:
            return {"status": "done", "result": None}
        result.state = {}  # large; the parent reloads it from state/final.pt
        return {"status": "done", "result": result}
    except NormViolationError as exc:
        return {"status": "halted", "result": exc.result if rank == 0 else None,
                "message": str(exc), "violation": exc.violation, "fix": exc.suggested_fix}
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def train_distributed(config: RunConfig, *, run_dir: str | Path | None, progress: bool) -> Any:
    from nora.ddp import run_group
    from nora.runner import new_run_dir
    from nora.runstatus import mark_stopped

    run_dir = Path(run_dir) if run_dir is not None else new_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    scratch_root = tempfile.mkdtemp(prefix=SCRATCH_PREFIX)
    defaults = {"config": config.model_dump(mode="json")}
    try:
        outs = run_group(_rank_main, config.ddp.world_size, backend=config.ddp.backend,
                         timeout_s=config.ddp.timeout_s,
                         args=(config.model_dump(mode="json"), str(run_dir), progress,
                               scratch_root))
    except KeyboardInterrupt:
        mark_stopped(run_dir, "interrupted", "interrupted (Ctrl-C) while the DDP group ran",
                     defaults=defaults)
        raise
    except BaseException as exc:
        mark_stopped(run_dir, "failed", f"{type(exc).__name__}: {exc}", defaults=defaults)
        raise
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
    first = outs[0]
    if first["status"] == "done":
        first["result"].state = torch.load(run_dir / "state" / "final.pt", weights_only=True)
    if first["status"] == "halted":
        raise NormViolationError(first["message"], violation=first["violation"],
                                 suggested_fix=first["fix"], result=first["result"])
    return first["result"]
