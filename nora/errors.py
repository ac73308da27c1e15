"""One error family for NORA, so callers can catch ``NoraError`` and nothing else.

Each class carries the exit code the command line answers it with (README, "exit code"):
2 for bad usage, bad config or bad input files (the default: most errors NORA raises on
purpose are about what it was given), 1 for a run that failed, 3 for a halt.
"""
from __future__ import annotations

import re
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_HALTED = 0, 1, 2, 3


class NoraError(Exception):
    """Base class of every error NORA raises on purpose."""

    exit_code = EXIT_USAGE


class ConfigError(NoraError):
    """A config key, value or override is invalid; the message names key, value and choices."""


class CheckpointError(NoraError):
    """A checkpoint is missing, truncated, altered or does not belong to this run."""


class RecordError(NoraError, ValueError):
    """A run directory or one of its record files is missing, unreadable or malformed.

    Also a ``ValueError``, so code that caught a bad JSON file as ``ValueError`` still does.
    """


class RunFailedError(NoraError):
    """A run started and could not finish (a rank died or hung, ...): exit code 1."""

    exit_code = EXIT_FAILED


class NormViolationError(NoraError):
    """Raised when the agent halts a run; ``.result`` holds what the run recorded so far."""

    exit_code = EXIT_HALTED

    def __init__(self, message: str, *, violation: str, suggested_fix: dict[str, Any],
                 result: Any = None) -> None:
        super().__init__(message)
        self.violation = violation
        self.suggested_fix = suggested_fix
        self.result = result


_TRACEBACK = "Traceback (most recent call last):"


def one_line(message: str) -> str:
    """``message`` on one line: indented detail lines joined with ``; ``, and an embedded
    traceback (a DDP rank's, say) reduced to its last line, the exception itself."""
    lines = [ln.rstrip() for ln in str(message).splitlines()]
    out: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == _TRACEBACK:
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                j += 1
            if j < len(lines):
                out.append(lines[j].strip())
            i = j + 1
            continue
        if lines[i].strip():
            out.append(lines[i].strip())
        i += 1
    text = "; ".join(out)
    return re.sub(r":; ", ": ", text)


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type when it has none), for messages
    that quote a library's error without its multi-line detail."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
