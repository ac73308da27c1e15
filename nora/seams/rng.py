"""Global RNG states (torch, numpy, python, CUDA) and tracked generators as checkpoint-safe
data: tensors, ints and lists only, so ``torch.load(weights_only=True)`` reads them."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng(generators: dict[str, torch.Tensor]) -> dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "gauss": py_state[2],  # a tensor: fast to (un)pickle
                   "state": torch.tensor(py_state[1], dtype=torch.int64)},
        "generators": dict(generators),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    words = p["state"].tolist() if torch.is_tensor(p["state"]) else p["state"]
    random.setstate((p["version"], tuple(words), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
