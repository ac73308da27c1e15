"""NORA: is this training run reproducible? Seeded trainers, injected violations, a
norm-enforcement agent, and records that CI can gate on.

Names load on first use, so importing the pytest plugin (or ``nora.errors``) does not pay
for torch until a run needs it.
"""
from __future__ import annotations

import importlib
from typing import Any

from nora.errors import CheckpointError, ConfigError, NoraError, NormViolationError

__version__ = "0.2.1"

_LAZY = {
    "expected_outcome": "nora.agent.outcomes",
    "Comparison": "nora.analysis", "assert_identical": "nora.analysis",
    "check_environment": "nora.analysis", "check_reproducible": "nora.analysis",
    "compare": "nora.analysis", "check_ddp": "nora.analysis",
    "check_resume": "nora.analysis.resume", "LoopMonitor": "nora.integrations.loop",
    "ConfigChange": "nora.config", "RunConfig": "nora.config", "load_config": "nora.config",
    "fingerprint": "nora.hashing",
    "replay": "nora.replaying",
    "verify": "nora.analysis.verify", "Verification": "nora.analysis.verify_report",
    "RunResult": "nora.runner", "train": "nora.launcher",
    "RunContext": "nora.context", "Trainer": "nora.protocol", "TrainerConfig": "nora.config.schema",
    "seed_everything": "nora.seeding",
    "VIOLATIONS": "nora.violations",
}

__all__ = ["CheckpointError", "ConfigError", "NoraError", "NormViolationError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nora' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
