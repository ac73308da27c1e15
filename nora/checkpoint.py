"""Checkpoints that are written atomically, carry a checksum and load only if intact.

Loading uses ``torch.load(weights_only=True)``: a checkpoint is data, never code.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from nora.errors import CheckpointError

FULL_STATE = ("model", "optimizer", "scheduler", "scaler", "rng", "position", "agent",
              "config_hash")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> str:
    """Write ``state`` atomically next to a ``.sha256`` file; return the checksum."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(dict(state), tmp)
        digest = file_sha256(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    Path(f"{path}.sha256").write_text(digest + "\n")
    return digest


def load_checkpoint(path: str | Path, *, expected_sha256: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint after checking its checksum; refuse anything truncated or altered."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    sidecar = Path(f"{path}.sha256")
    expected = expected_sha256 or (sidecar.read_text().strip() if sidecar.exists() else None)
    if expected is None:
        raise CheckpointError(f"checkpoint {str(path)!r} has no recorded checksum; "
                              "refusing to load an unverifiable file")
    actual = file_sha256(path)
    if actual != expected:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or altered: sha256 "
                              f"{actual[:16]}… != recorded {expected[:16]}…")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise CheckpointError(f"checkpoint {str(path)!r} could not be read: {exc}") from None


def audit(state: Mapping[str, Any], required: Iterable[str] = FULL_STATE) -> list[str]:
    """Names of the required parts a checkpoint lacks (empty when it is complete)."""
    return [k for k in required if k not in state or state[k] is None]
