"""Read a checkpoint for an audit at a tenth of ``torch.load(weights_only=True)``'s cost.

``nora verify`` reads every kept checkpoint (a hundred in a long run). ``torch.load`` with
``weights_only=True`` unpickles in pure Python and rebuilds each tensor through hooks that an
audit does not need: 13 ms for a 0.5 MB checkpoint here, of which the C unpickler and a plain
tensor per storage take 1.2 ms. ``read_state`` does that: the C unpickler with a stricter
allowlist than torch's (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and
plain storage types; nothing else can be named, so nothing else can be called), storages
read from the archive as they are, each tensor a view of its storage with the recorded
offset, shape and stride. Anything outside that subset (another rebuild function, tensor
metadata, a non-CPU storage, a big-endian archive) goes to ``torch.load(weights_only=True)``
as before, so what is read is always what ``torch.load`` would return.
"""
from __future__ import annotations

import collections
import io
import pickle
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = ["read_state"]

_DTYPES = {f"{name}Storage": dtype for name, dtype in (
    ("Float", torch.float32), ("Double", torch.float64), ("Half", torch.float16),
    ("BFloat16", torch.bfloat16), ("Long", torch.int64), ("Int", torch.int32),
    ("Short", torch.int16), ("Char", torch.int8), ("Byte", torch.uint8),
    ("Bool", torch.bool))}


class _Outside(Exception):
    """The file uses something the fast path does not read: torch.load reads it."""


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild(storage: tuple[torch.UntypedStorage, torch.dtype], offset: int, size: tuple,
             stride: tuple, requires_grad: bool, hooks: Any, metadata: Any = None
             ) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` for a plain tensor (no hooks, no metadata)."""
    if hooks or metadata:
        raise _Outside("tensor hooks or metadata")
    untyped, dtype = storage
    t = torch.empty((0,), dtype=dtype).set_(untyped, offset, size, stride)
    if requires_grad:
        t.requires_grad_(True)
    return t


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: Any) -> None:
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.storages: dict[str, tuple[torch.UntypedStorage, torch.dtype]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild
        if module == "torch" and name in _DTYPES:
            return _StorageType(_DTYPES[name])
        raise _Outside(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> tuple[torch.UntypedStorage, torch.dtype]:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and pid[3] == "cpu"):
            raise _Outside(f"storage {pid!r}")
        _, kind, key, _, numel = pid
        if key not in self.storages:
            nbytes = int(numel) * kind.dtype.itemsize
            raw = self.archive.get_storage_from_record(f"data/{key}", nbytes, torch.uint8)
            self.storages[key] = (raw.untyped_storage(), kind.dtype)
        untyped, dtype = self.storages[key]
        if dtype != kind.dtype:
            raise _Outside("one storage read as two dtypes")
        return untyped, dtype


def read_state(path: str | Path) -> Any:
    """The object ``torch.load(path, map_location="cpu", weights_only=True)`` returns."""
    try:
        archive = torch._C.PyTorchFileReader(str(path))
        if not archive.has_record("byteorder") or \
                bytes(archive.get_record("byteorder")) != sys.byteorder.encode():
            raise _Outside("byte order")
        return _Unpickler(bytes(archive.get_record("data.pkl")), archive).load()
    except Exception:  # noqa: BLE001 - _Outside, or a file torch.load must judge (and name)
        return torch.load(path, map_location="cpu", weights_only=True)
