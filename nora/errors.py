"""One error family for NORA, so callers can catch ``NoraError`` and nothing else."""
from __future__ import annotations

from typing import Any


class NoraError(Exception):
    """Base class of every error NORA raises on purpose."""


class ConfigError(NoraError):
    """A config key, value or override is invalid; the message names key, value and choices."""


class CheckpointError(NoraError):
    """A checkpoint is missing, truncated, altered or does not belong to this run."""


class NormViolationError(NoraError):
    """Raised when the agent halts a run; ``.result`` holds what the run recorded so far."""

    def __init__(self, message: str, *, violation: str, suggested_fix: dict[str, Any],
                 result: Any = None) -> None:
        super().__init__(message)
        self.violation = violation
        self.suggested_fix = suggested_fix
        self.result = result
