"""Every global RNG state of a process, as data a ``weights_only=True`` load accepts.

``numpy.random.get_state()`` holds a numpy array and ``random.getstate()`` a tuple of ints;
a checkpoint holding them as they are fails to load with ``weights_only=True``. Here each is
stored as tensors, ints and floats, and restored exactly.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from nora.hashing import fingerprint

__all__ = ["KINDS", "capture_rng", "restore_rng", "rng_hash"]

KINDS = ("torch", "numpy", "python")     # plus "cuda" where CUDA is initialised


def capture_rng() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy and python global RNG states, as plain data."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set the global RNGs to a state from ``capture_rng`` (kinds it lacks stay as they are)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                             n["has_gauss"], n["cached_gaussian"]))
    if "python" in state:
        p = state["python"]
        random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()),
                         p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def rng_hash() -> str:
    """A short hash of the torch CPU RNG state: equal hashes mean equal random draws ahead."""
    return fingerprint(torch.get_rng_state())[:16]
