"""The built-in trainers' own ``trainer.*`` schemas (kept apart from the trainers so the PPO
engine and tests can build one without a run)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from nora.config.schema import TrainerConfig


class SupervisedConfig(TrainerConfig):
    channels: int = Field(16, ge=1)
    hidden: int = Field(64, ge=1)
    dropout: float = Field(0.25, ge=0, lt=1)
    batch_norm: bool = True
    augment: bool = True
    max_shift: int = Field(1, ge=0)
    noise_std: float = Field(0.05, ge=0)
    train_subset: int | None = Field(None, ge=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)


class PPOConfig(TrainerConfig):
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
