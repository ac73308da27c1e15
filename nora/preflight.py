"""What would make a run fail at its start, checked before anything is written.

Called by the command line before Hydra creates a run directory and by the runner before
it creates one, so bad input (``device=cuda`` without a GPU, a ``resume_from`` that is
missing, unverifiable or altered) leaves no run directory behind.
"""
from __future__ import annotations

from typing import Any


def preflight(config: Any) -> None:
    """Raise the ``NoraError`` a run of ``config`` would raise at its start, if any."""
    from nora.checkpoint import verify_checkpoint
    from nora.devices import resolve_device

    resolve_device(config.device)
    if config.resume_from:
        verify_checkpoint(config.resume_from)
