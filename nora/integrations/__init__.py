"""NORA inside the training users already have: a Lightning callback, a stable-baselines3
callback and a monitor for hand-written loops.

Each writes a NORA run directory (manifest, per-step records, the three norms files with
``findings``) and lets the regime act on what the run really does. Lightning and
stable-baselines3 are imported only by their own modules (``nora.integrations.lightning``,
``nora.integrations.sb3``); importing this package imports neither.
"""
from __future__ import annotations

__all__: list[str] = []
