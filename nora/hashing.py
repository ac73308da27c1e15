"""Content hashes of tensors, arrays and nested state, from raw bytes plus dtype and shape.

No serialization round-trip: two objects with the same values, dtypes and shapes hash the
same in any process, and anything else hashes differently. Only dense (strided) tensors with
plain dtypes are hashed; a tensor whose bytes are not its values (sparse, quantized, nested,
MKL-DNN, meta) or an array of Python objects raises TypeError instead of a wrong hash.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xxhash

from nora.records import _default as _json_default


_SPARSE = (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr,
           torch.sparse_bsc)


def _check_tensor(t: torch.Tensor) -> None:
    """TypeError naming the layout / dtype / device of a tensor whose bytes are not its values."""
    if t.layout in _SPARSE:
        raise TypeError(f"fingerprint: cannot hash a sparse tensor (layout {t.layout}); "
                        "hash t.to_dense(), or its indices and values, instead")
    if t.is_quantized:
        raise TypeError(f"fingerprint: cannot hash a quantized tensor (dtype {t.dtype}): its "
                        "stored integers mean nothing without scale and zero point; hash "
                        "t.dequantize(), or t.int_repr() with its quantization parameters")
    if t.is_nested:
        raise TypeError(f"fingerprint: cannot hash a nested tensor (layout {t.layout}); "
                        "hash t.unbind() (its components) instead")
    if t.layout != torch.strided:
        raise TypeError(f"fingerprint: cannot hash a tensor with layout {t.layout}; only "
                        "dense (torch.strided) tensors are supported, e.g. hash t.to_dense()")
    if t.device.type == "meta":
        raise TypeError(f"fingerprint: cannot hash a meta tensor (shape {tuple(t.shape)}, "
                        f"dtype {t.dtype}): it has no data")


_STRIDED = torch.strided
_HEADERS: dict[tuple[torch.dtype, torch.Size], bytes] = {}   # "T|dtype|shape|", per kind


def plain_bytes(t: torch.Tensor) -> tuple[bytes, memoryview] | None:
    """``(header, bytes)`` that hash a dense contiguous CPU tensor, the bytes a view of its
    memory (no copy: what state dicts hold, so what every step's parameter hash reads);
    None for anything that needs ``_update``'s care."""
    if (t.layout is not _STRIDED or t.is_quantized or t.is_nested or t.device.type != "cpu"
            or not t.is_contiguous() or t.is_conj() or t.is_neg()):
        return None
    flat = t.detach().reshape(-1)
    if flat.numel() and flat.stride(0) != 1:    # one element with another stride
        return None
    key = (t.dtype, t.shape)
    header = _HEADERS.get(key)
    if header is None:
        header = f"T|{t.dtype}|{tuple(t.shape)}|".encode()
        if len(_HEADERS) < 4096:
            _HEADERS[key] = header
    return header, memoryview(flat.view(torch.uint8).numpy())


def _update(h: "xxhash.xxh3_128", obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        plain = plain_bytes(obj)
        if plain is not None:
            h.update(plain[0])
            h.update(plain[1])
            return
        _check_tensor(obj)
        t = obj.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.resolve_conj().resolve_neg().contiguous()     # lazy conjugate / negative views
        h.update(f"T|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            flat = t.reshape(-1)
            if flat.stride(0) != 1:     # one element with another stride counts as contiguous
                flat = flat.clone(memory_format=torch.contiguous_format)
            h.update(memoryview(flat.view(torch.uint8).numpy()))
    elif isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError(f"fingerprint: cannot hash a numpy array of dtype {obj.dtype} "
                            "(it holds references to Python objects, not values)")
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


class _Both:
    """Feeds every chunk to two hashers, so one pass over the tensors gives two hashes."""

    def __init__(self, a: "xxhash.xxh3_128", b: "xxhash.xxh3_128") -> None:
        self.a, self.b = a, b

    def update(self, data: Any) -> None:
        self.a.update(data)
        self.b.update(data)


def fingerprint_and_hashes(state: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """``(fingerprint(state), tensor_hashes(state))`` reading each tensor once."""
    whole = xxhash.xxh3_128()
    whole.update(f"D|{len(state)}|".encode())
    leaves: dict[str, str] = {}
    for key in sorted(state, key=str):
        whole.update(f"K|{key!s}|".encode())
        leaf = xxhash.xxh3_128()
        _update(_Both(whole, leaf), state[key])
        leaves[str(key)] = leaf.hexdigest()
    return whole.hexdigest(), {str(k): leaves[str(k)] for k in state}


# --- two-level (Merkle-style) hash: per-tensor leaves under one root -------------------------
def tree_hash(state: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """``(root, leaves)`` of a state dict: one leaf hash per entry and a root over the sorted
    ``name=leaf`` pairs, so two roots that differ can be explained by the leaves that differ
    without keeping any tensor."""
    leaves = tensor_hashes(state)
    return tree_root(leaves), leaves


def tree_root(leaves: Mapping[str, str]) -> str:
    """The root over leaf hashes (independent of their order)."""
    h = xxhash.xxh3_128()
    for name in sorted(leaves):
        h.update(f"{name}={leaves[name]}\n".encode())
    return h.hexdigest()


def record_digest(record: Mapping[str, Any]) -> str:
    """A digest of one JSON record as it reads back from disk (keys sorted), so an edit of a
    written line is found by recomputing it from the line."""
    canon = json.loads(json.dumps(record, default=_json_default, allow_nan=True))
    return xxhash.xxh3_128(json.dumps(canon, sort_keys=True, allow_nan=True).encode()).hexdigest()

