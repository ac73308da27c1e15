"""Which device a run uses; ``auto`` means the first GPU when there is one."""
from __future__ import annotations

import torch

from nora.errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={spec!r} but no CUDA device is available; "
                              "valid choices here: auto, cpu")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device={spec!r} but only {torch.cuda.device_count()} "
                              "CUDA device(s) exist")
        return dev
    return torch.device(spec)
