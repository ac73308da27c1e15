"""A data loader's position that a checkpoint can carry: resume mid-epoch on the same batch.

``DataLoader(shuffle=True)`` draws a fresh permutation from the global torch RNG when an
epoch's iteration starts, and keeps no record of how far it got, so a resumed run restarts
the epoch from its first batch (Lightning #17543). ``ResumableSampler`` wraps the loader's
index sampler in place: it remembers the torch RNG state the epoch's permutation was drawn
from and how many batches were consumed; restored, it redraws the same permutation, skips
the consumed batches at the index level (no data is loaded for them) and sets the RNG to
the checkpoint's state. Without a pending restore it changes nothing: same draws, same order.
Exact for ``num_workers=0``; with workers the workers' seeds come from the loader's own draw.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

__all__ = ["ResumableSampler", "make_resumable"]


class ResumableSampler(Sampler[int]):
    """Wraps an index sampler; ``consumed`` is advanced by the caller once per trained batch."""

    def __init__(self, inner: Any, batch_size: int) -> None:
        self.inner = inner
        self.batch_size = batch_size
        self.epoch_rng: torch.Tensor | None = None
        self.consumed = 0
        self.iterations = 0
        self.restored_at: int | None = None     # the batch a restore resumed from
        self._pending: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[int]:
        pending, self._pending = self._pending, None
        if pending is not None:
            torch.set_rng_state(pending["epoch_rng"])
        self.epoch_rng = torch.get_rng_state()
        self.consumed, self.iterations = 0, self.iterations + 1
        skip = int(pending["consumed"]) * self.batch_size if pending is not None else 0
        it = iter(self.inner)
        # the first element is drawn now, so a sampler that draws its permutation lazily
        # (RandomSampler) draws it from the epoch's RNG state, restored or not
        head = list(itertools.islice(it, skip + 1))[skip:]
        if pending is not None:
            self.consumed = self.restored_at = int(pending["consumed"])
            if pending.get("rng_after") is not None:
                torch.set_rng_state(pending["rng_after"])
        return itertools.chain(head, it)

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and ints (``weights_only=True`` loads it)."""
        return {"epoch_rng": self.epoch_rng, "consumed": self.consumed,
                "batches": len(self) // max(self.batch_size, 1)}

    def load_state_dict(self, state: dict[str, Any], *,
                        rng_after: torch.Tensor | None = None) -> None:
        """Restore at the next epoch iteration; ``rng_after`` is the torch RNG to end with."""
        if state.get("epoch_rng") is None:      # saved before any epoch started
            return
        self._pending = {"epoch_rng": state["epoch_rng"], "consumed": state["consumed"],
                         "rng_after": rng_after}


def make_resumable(loader: DataLoader) -> ResumableSampler | None:
    """Install a ``ResumableSampler`` in ``loader`` (once); None if it cannot be (a custom
    batch sampler without ``.sampler``, or an iterable-style dataset)."""
    bs = getattr(loader, "batch_sampler", None)
    inner = getattr(bs, "sampler", None)
    if isinstance(inner, ResumableSampler):
        return inner
    if bs is None or inner is None or not isinstance(getattr(bs, "batch_size", None), int):
        return None
    wrapper = ResumableSampler(inner, bs.batch_size)
    bs.sampler = wrapper
    return wrapper
