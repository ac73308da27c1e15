"""NORA: is this training run reproducible? Seeded trainers, injected violations, a
norm-enforcement agent, and records that CI can gate on."""
from __future__ import annotations

from nora.agent.outcomes import expected_outcome
from nora.analysis import (Comparison, assert_identical, check_environment,
                           check_reproducible, compare)
from nora.config import ConfigChange, RunConfig, load_config
from nora.errors import CheckpointError, ConfigError, NoraError, NormViolationError
from nora.fingerprint import fingerprint
from nora.replay import replay
from nora.runner import RunResult, train
from nora.seeding import seed_everything
from nora.violations import VIOLATIONS

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "Comparison", "ConfigChange", "ConfigError", "NoraError",
    "NormViolationError", "RunConfig", "RunResult", "VIOLATIONS", "assert_identical",
    "check_environment", "check_reproducible", "compare", "expected_outcome", "fingerprint", "load_config",
    "replay", "seed_everything", "train",
]
