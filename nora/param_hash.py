"""The per-step parameter hash, ``tree_hash(model.state_dict())``, at a third of its cost.

Every step of a run records it, so its cost is paid on every step: in a training loop,
``state_dict()`` took 0.25 ms and hashing its 18 tensors one by one 0.4-0.5 ms of a 19 ms
step of the digits CNN. ``StepHasher`` finds the state dict's tensors through the modules'
own parameter and buffer tables (read afresh each step, so a replaced tensor is seen),
copies them into one preallocated byte buffer with a single ``torch.cat`` and hashes slices
of it: the same leaves and root, bit for bit. Whatever it cannot vouch for (a module whose
``state_dict`` is not its tables, a tensor off the CPU or not plain) goes through
``tree_hash(model.state_dict())``; the tables are checked against ``state_dict()`` again
every ``recheck`` steps.
"""
from __future__ import annotations

from typing import Any

import torch
import xxhash
from torch import nn

from nora.hashing import tree_hash, tree_root

_Entry = tuple[str, dict[str, Any], str]      # state-dict key, the table holding it, its name


def _entries(model: nn.Module) -> list[_Entry] | None:
    """The state dict's keys with where each tensor lives; None where they disagree."""
    out: list[_Entry] = []
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        out += [(dot + k, module._parameters, k) for k, v in module._parameters.items()
                if v is not None]
        out += [(dot + k, module._buffers, k) for k, v in module._buffers.items()
                if v is not None and k not in module._non_persistent_buffers_set]
    state = model.state_dict()
    if [name for name, _, _ in out] != list(state):
        return None
    for name, table, key in out:
        mine, theirs = table[key], state[name]
        if not (isinstance(mine, torch.Tensor) and isinstance(theirs, torch.Tensor)
                and mine.dtype == theirs.dtype and mine.shape == theirs.shape
                and mine.data_ptr() == theirs.data_ptr()):
            return None                       # a _save_to_state_dict of its own, a hook
    return out


def _plain(t: torch.Tensor) -> bool:
    return (t.device.type == "cpu" and t.layout is torch.strided and not t.is_quantized
            and not t.is_nested and not t.is_conj() and not t.is_neg())


class StepHasher:
    """``hasher(model) -> (root, leaves)``, equal to ``tree_hash(model.state_dict())``."""

    def __init__(self, recheck: int = 64) -> None:
        self.recheck, self._calls = recheck, 0
        self._model: nn.Module | None = None
        self._entries: list[_Entry] | None = None
        self._layout: tuple[Any, ...] | None = None
        self._buffer: tuple[torch.Tensor, memoryview, list[bytes], list[int]] | None = None

    def __call__(self, model: nn.Module) -> tuple[str, dict[str, str]]:
        if model is not self._model or self._calls % self.recheck == 0:
            self._model, self._entries = model, _entries(model)
        self._calls += 1
        if self._entries is None:
            return tree_hash(model.state_dict())
        tensors = [table[key].detach() for _, table, key in self._entries]
        if not all(_plain(t) for t in tensors):
            return tree_hash(model.state_dict())
        layout = tuple((t.dtype, t.shape) for t in tensors)
        if layout != self._layout:
            self._layout, self._buffer = layout, self._allocate(tensors)
        buffer, view, headers, offsets = self._buffer    # type: ignore[misc]
        try:
            torch.cat([t.reshape(-1).view(torch.uint8) for t in tensors], out=buffer)
        except RuntimeError:                  # e.g. one element viewed with another stride
            return tree_hash(model.state_dict())
        leaves = {}
        for i, (name, _, _) in enumerate(self._entries):
            h = xxhash.xxh3_128(headers[i])
            h.update(view[offsets[i]:offsets[i + 1]])
            leaves[name] = h.hexdigest()
        return tree_root(leaves), leaves

    @staticmethod
    def _allocate(tensors: list[torch.Tensor]
                  ) -> tuple[torch.Tensor, memoryview, list[bytes], list[int]]:
        offsets = [0]
        for t in tensors:
            offsets.append(offsets[-1] + t.numel() * t.element_size())
        buffer = torch.empty(offsets[-1], dtype=torch.uint8)
        headers = [f"T|{t.dtype}|{tuple(t.shape)}|".encode() for t in tensors]
        return buffer, memoryview(buffer.numpy()), headers, offsets
