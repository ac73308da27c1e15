"""The validated shape of a run: every value comes from a YAML preset or an override."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator

from nora.config.tracking import TrackingConfig

ModeName = Literal["pipeline", "agentic", "norm_aware"]
RegimeName = Literal["strict", "balanced", "exploratory"]
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModeConfig(_Frozen):
    """What the agent watches and whether it records its own interventions."""

    name: ModeName
    agent: bool
    observes: Literal["nothing", "runtime", "all"]
    track_interventions: bool
    plateau_patience: int = Field(ge=1)
    plateau_factor: float = Field(gt=0, lt=1)


class RegimePolicy(_Frozen):
    """How the agent answers a detected violation."""

    name: RegimeName
    halt_on_violations: bool
    auto_fix: bool
    violation_tolerance: int = Field(ge=0)
    max_retries: int = Field(ge=1)


class ViolationConfig(_Frozen):
    """Which violation is injected (a registered name or dotted path), and where in the run."""

    name: str
    at_fraction: float = Field(ge=0, le=1)
    lr_factor: float = Field(gt=0)
    loss_scale: float = Field(gt=0)

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        from nora.registry import is_dotted, names
        if not is_dotted(v) and v not in names("violation"):
            raise ValueError(f"violation {v!r} is unknown; valid choices: "
                             f"{', '.join(names('violation'))}")
        return v


class TrainerConfig(_Frozen):
    """Base of every trainer's own ``Config`` (its ``trainer.*`` keys); ``name`` is the
    registered name or dotted path it was picked by."""

    name: str


class TrainConfig(_Frozen):
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    lr_schedule: Literal["constant", "cosine", "linear"]
    amp: bool
    max_steps: int | None = Field(ge=1)
    checkpoint_every: int = Field(ge=0)
    eval_every: int = Field(ge=1)


class ReproConfig(_Frozen):
    deterministic: bool
    cudnn_benchmark: bool
    torch_threads: int = Field(ge=1)
    step_fingerprint_every: int = Field(ge=0)


class DDPConfig(_Frozen):
    """``world_size`` ranks, one process each; ``emulate`` computes the same per-rank
    gradients in one process, one shard after another (the bitwise reference for DDP)."""

    world_size: int = Field(ge=1)
    backend: Literal["auto", "gloo", "nccl"]
    timeout_s: float = Field(gt=0)
    emulate: bool


class ConfigChange(_Frozen):
    """A tracked mid-run change of one config value; replay applies it at the same step."""

    step: int = Field(ge=0)
    key: str
    old: bool | int | float | str | tuple[str, ...] | None
    new: bool | int | float | str | tuple[str, ...] | None
    source: str
    event: Literal["startup", "step", "eval", "checkpoint"] = "step"


class RunConfig(_Frozen):
    """A whole run. Build it with ``nora.load_config([...overrides])``."""

    seed: int | None
    mode: ModeConfig
    regime: RegimePolicy
    violation: ViolationConfig
    trainer: SerializeAsAny[TrainerConfig]
    train: TrainConfig
    repro: ReproConfig
    ddp: DDPConfig
    device: str
    resume_from: str | None
    replay_changes: tuple[ConfigChange, ...]
    tracking: TrackingConfig = TrackingConfig()
    # fsync every record and checkpoint (survives a lost machine); false: atomic renames
    # only (survives any killed process), what pytest cases use
    durable: bool = True

    @field_validator("trainer", mode="before")
    @classmethod
    def _trainer(cls, v: object) -> object:
        """Validate ``trainer.*`` with the registered trainer's own schema."""
        if isinstance(v, dict) and isinstance(v.get("name"), str):
            from nora.registry import load
            return load("trainer", v["name"]).Config.model_validate(v)
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not _DEVICE.match(v):
            raise ValueError(f"device {v!r} is not one of auto, cpu, cuda, cuda:N")
        return v
