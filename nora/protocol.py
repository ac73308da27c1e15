"""``nora.Trainer``: what a class needs to train under NORA.

Register it by entry point (group ``nora.trainers``) or pick it by dotted path
(``trainer=package.module:Class``). It trains only through its ``RunContext``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from nora.config.schema import TrainerConfig
from nora.context import RunContext


@runtime_checkable
class Trainer(Protocol):
    """``Config`` validates the trainer's ``trainer.*`` keys (pydantic, frozen,
    ``extra="forbid"``, subclass of ``nora.TrainerConfig``). ``total_steps`` is set by
    ``__init__``; ``load`` resumes from a checkpoint written through the context and returns
    the parts it lacked. ``inapplicable`` (optional) names violations it cannot have."""

    Config: ClassVar[type[TrainerConfig]]
    total_steps: int

    def __init__(self, ctx: RunContext) -> None: ...
    def fit(self) -> dict[str, Any]: ...
    def final_state(self) -> dict[str, torch.Tensor]: ...
    def load(self, path: str | Path) -> list[str]: ...
