"""``nora.train``: spawn DDP ranks (or join torchrun's) when the config asks for a process
group, else train here. Above the runner, so ranks can call the runner without a circle."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nora.config.schema import RunConfig
from nora.preflight import preflight
from nora.runner import RunResult
from nora.runner import train as train_here


def needs_group(config: RunConfig) -> bool:
    import torch.distributed as dist

    return (config.ddp.world_size > 1 and not config.ddp.emulate
            and not (dist.is_available() and dist.is_initialized()))


def train(config: RunConfig, *, run_dir: str | Path | None = None, progress: bool = False,
          start_settings: dict[str, Any] | None = None) -> RunResult:
    """Run one training from a validated config; raises NormViolationError on a halt.

    With ``ddp.world_size > 1`` (and no emulation) one process per rank is spawned, or
    torchrun's ranks are joined; rank 0 writes the records.
    """
    preflight(config)  # a bad device or resume_from fails before any run directory exists
    if needs_group(config):
        from nora.trainers.distributed import train_distributed
        return train_distributed(config, run_dir=run_dir, progress=progress)
    return train_here(config, run_dir=run_dir, progress=progress, start_settings=start_settings)
