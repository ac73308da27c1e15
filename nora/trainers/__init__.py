"""Trainer registry: ``trainer.name`` -> a class built from the live run and a device."""
from __future__ import annotations

from typing import Any

import torch


def make_trainer(run: Any, device: torch.device, *, progress: bool = False) -> Any:
    name = run.config.trainer.name
    if name == "supervised":
        from nora.trainers.supervised import SupervisedTrainer
        return SupervisedTrainer(run, device, progress=progress)
    if name == "ppo":
        from nora.trainers.ppo import PPOTrainer
        return PPOTrainer(run, device, progress=progress)
    raise ValueError(f"trainer {name!r} is unknown; valid choices: supervised, ppo")
