"""Content hashes of tensors, arrays and nested state, from raw bytes plus dtype and shape.

No serialization round-trip: two objects with the same values, dtypes and shapes hash the
same in any process, and anything else hashes differently.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xxhash


def _update(h: "xxhash.xxh3_128", obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        h.update(f"T|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"A|{a.dtype.str}|{a.shape}|".encode())
        h.update(memoryview(a).cast("B"))
    elif isinstance(obj, torch.nn.Module):
        _update(h, obj.state_dict())
    elif isinstance(obj, Mapping):
        h.update(f"D|{len(obj)}|".encode())
        for key in sorted(obj, key=str):
            h.update(f"K|{key!s}|".encode())
            _update(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L|{len(obj)}|".encode())
        for item in obj:
            _update(h, item)
    elif isinstance(obj, float):
        h.update(b"F|" + np.float64(obj).tobytes())
    elif obj is None or isinstance(obj, (bool, int, str, bytes)):
        h.update(f"S|{type(obj).__name__}|{obj!r}|".encode())
    else:
        raise TypeError(f"fingerprint: cannot hash object of type {type(obj).__name__!r}; "
                        "expected a tensor, array, module, mapping, sequence or scalar")


def fingerprint(obj: Any) -> str:
    """Return a 32-hex-digit content hash of ``obj`` (tensor, array, state dict, nesting)."""
    h = xxhash.xxh3_128()
    _update(h, obj)
    return h.hexdigest()


def tensor_hashes(state: Mapping[str, Any]) -> dict[str, str]:
    """One hash per entry of a (flattened) state dict, to name what differs."""
    return {str(k): fingerprint(v) for k, v in state.items()}
