"""The effective settings a run trains with.

The config says what the user asked for; knobs say what the run is actually doing. An
injected violation changes knobs behind the config's back, a fix puts them right, and
trainers read only knobs, so every injection has its real effect on the run.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nora.checkpoint import FULL_STATE
from nora.config.schema import RunConfig


@dataclass
class Knobs:
    seed: int
    seeded: bool
    deterministic: bool
    cudnn_benchmark: bool
    loader_workers: int = 0
    loader_in_order: bool = True
    amp: bool = False
    grad_scaler: bool = False
    static_loss_scale: float | None = None
    eval_mode: bool = True
    eval_augment: bool = False
    checkpoint_parts: tuple[str, ...] = FULL_STATE
    lr: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: RunConfig) -> Knobs:
        return cls(
            seed=config.seed if config.seed is not None else 0,
            seeded=config.seed is not None,
            deterministic=config.repro.deterministic,
            cudnn_benchmark=config.repro.cudnn_benchmark,
            amp=config.train.amp,
            grad_scaler=config.train.amp,
            lr=config.train.lr,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
