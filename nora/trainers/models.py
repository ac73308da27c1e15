"""The supervised trainer's network, initialised from an explicit generator."""
from __future__ import annotations

import math

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Two conv blocks (batch norm optional), then dropout and two linear layers."""

    def __init__(self, channels: int, hidden: int, dropout: float,
                 batch_norm: bool = True) -> None:
        super().__init__()
        c = channels
        norm = nn.BatchNorm2d if batch_norm else (lambda _: nn.Identity())
        self.features = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), norm(c), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, padding=1), norm(2 * c), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * c * 16, hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def init_parameters(model: nn.Module, gen: torch.Generator) -> None:
    """torch's default init for conv/linear layers, drawn from ``gen`` instead of the global RNG."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(m.bias, -bound, bound, generator=gen)
