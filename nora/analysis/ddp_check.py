"""``nora.check_ddp``: a trainer's DDP run against its emulated reference (all ranks'
gradients computed in one process, one shard after another), bitwise."""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from nora.analysis.compare import Comparison, compare


def check_ddp(overrides: Sequence[str] = (), *, world_size: int = 2,
              run_dir: str | Path | None = None) -> Comparison:
    """Train the config of ``overrides`` on ``world_size`` ranks (one process each) and
    emulated in one process; the two must be bit-identical. ``report()`` names the first
    divergent step and tensors, with a hint."""
    from nora.config import load_config
    from nora.launcher import train

    root = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix="nora-check-ddp-"))
    base = [*overrides, f"ddp.world_size={world_size}"]
    ddp = train(load_config([*base, "ddp.emulate=false"]), run_dir=root / "ddp")
    emulated = train(load_config([*base, "ddp.emulate=true"]), run_dir=root / "emulated")
    return compare(ddp.run_dir, emulated.run_dir, labels=("ddp", "emulated"))
