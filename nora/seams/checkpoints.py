"""Checkpoint save/load, and an audit of what a checkpoint file really holds."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nora.checkpoint import load_checkpoint, save_checkpoint

RNG_PARTS = ("torch", "numpy", "python", "generators")


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, Mapping) and not v)


def audit_contents(state: Mapping[str, Any], *, steps_done: int = 1, amp: bool = False,
                   scheduled: bool = True) -> list[str]:
    """What a resume from this checkpoint would lack, read from its contents."""
    missing = [p for p in ("model", "position") if _empty(state.get(p))]
    opt = state.get("optimizer")
    if _empty(opt) or (steps_done > 0 and _empty(opt.get("state"))):
        missing.append("optimizer state")
    if scheduled and _empty(state.get("scheduler")):
        missing.append("scheduler position")
    if amp and _empty(state.get("scaler")):
        missing.append("scaler state")
    rng = state.get("rng")
    rng = rng if isinstance(rng, Mapping) else {}
    missing += [f"rng.{p}" for p in RNG_PARTS if p not in rng]
    if _empty(state.get("agent")):
        missing.append("agent memory")
    return missing


class CheckpointSeam:
    def __init__(self) -> None:
        self.drop: tuple[str, ...] = ()
        self.last_path: Path | None = None
        self.last_state: dict[str, Any] | None = None
        self.written: dict[Path, str] = {}
        self.last_written: dict[str, Any] | None = None

    def save(self, state: Mapping[str, Any], path: str | Path) -> str:
        """Write the checkpoint (without the parts a violation drops); returns its sha256."""
        self.last_state = dict(state)
        kept = {k: v for k, v in state.items() if k not in self.drop}
        self.last_written = kept
        self.last_path = Path(path)
        sha = save_checkpoint(kept, path)
        self.written[self.last_path] = sha
        return sha

    def resave(self) -> str | None:
        """Write the last checkpoint again with the current policy (after a fix)."""
        if self.last_state is None or self.last_path is None:
            return None
        return self.save(self.last_state, self.last_path)

    def read_last(self, *, from_disk: bool = False) -> dict[str, Any] | None:
        """The last checkpoint's contents as written: what ``torch.save`` was handed after
        every part a violation dropped, or (``from_disk``, to validate a fix) the file read
        back, which costs a full weights-only unpickling."""
        if self.last_path is None:
            return None
        if not from_disk:
            return self.last_written
        import torch

        return torch.load(self.last_path, map_location="cpu", weights_only=True, mmap=True)

    @staticmethod
    def load(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location)
