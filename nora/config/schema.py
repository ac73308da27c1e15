"""The validated shape of a run: every value comes from a YAML preset or an override."""
from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nora.config.tracking import TrackingConfig

ModeName = Literal["pipeline", "agentic", "norm_aware"]
RegimeName = Literal["strict", "balanced", "exploratory"]
ViolationName = Literal["none", "missing_seed", "nondeterminism_enabled",
                        "untracked_config_change", "amp_nan", "eval_mode_bug", "aug_leak",
                        "checkpoint_incomplete"]
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
    """Which violation is injected, and where in the run."""

    name: ViolationName
    at_fraction: float = Field(ge=0, le=1)
    lr_factor: float = Field(gt=0)
    loss_scale: float = Field(gt=0)


class SupervisedConfig(_Frozen):
    name: Literal["supervised"]
    channels: int = Field(ge=1)
    hidden: int = Field(ge=1)
    dropout: float = Field(ge=0, lt=1)
    batch_norm: bool
    augment: bool
    max_shift: int = Field(ge=0)
    noise_std: float = Field(ge=0)
    train_subset: int | None = Field(ge=1)
    test_fraction: float = Field(gt=0, lt=1)


class PPOConfig(_Frozen):
    name: Literal["ppo"]
    env_id: str
    num_envs: int = Field(ge=1)
    num_steps: int = Field(ge=1)
    update_epochs: int = Field(ge=1)
    gamma: float = Field(gt=0, le=1)
    gae_lambda: float = Field(ge=0, le=1)
    clip_start: float = Field(gt=0)
    clip_end: float = Field(gt=0)
    ent_start: float = Field(ge=0)
    ent_end: float = Field(ge=0)
    vf_coef: float = Field(ge=0)
    max_grad_norm: float = Field(gt=0)
    hidden: int = Field(ge=1)
    norm_adv: bool
    eval_episodes: int = Field(ge=0)
    obs_noise_std: float = Field(ge=0)
    sampler_device: Literal["cpu", "same"]


TrainerConfig = Annotated[Union[SupervisedConfig, PPOConfig], Field(discriminator="name")]


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
    trainer: TrainerConfig
    train: TrainConfig
    repro: ReproConfig
    ddp: DDPConfig
    device: str
    resume_from: str | None
    replay_changes: tuple[ConfigChange, ...]
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not _DEVICE.match(v):
            raise ValueError(f"device {v!r} is not one of auto, cpu, cuda, cuda:N")
        return v
