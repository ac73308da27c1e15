"""The data loader factory: settings a violation can change, and the real loader it built,
which the nondeterminism detector inspects (``in_order``, workers)."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


class LoaderSeam:
    def __init__(self) -> None:
        self.workers, self.in_order = 0, True
        self.last: DataLoader | None = None

    def __call__(self, dataset: Dataset, *, sampler: Any = None,
                 generator: torch.Generator | None = None) -> DataLoader:
        """A loader over pre-batched indices; with workers, batches may be prefetched for the
        whole pass, so an unordered loader's order is a race for the whole pass."""
        parallel: dict[str, Any] = {}
        if self.workers:
            n = len(sampler) if sampler is not None else len(dataset)  # type: ignore[arg-type]
            parallel = {"in_order": self.in_order,
                        "prefetch_factor": max(2, min(64, -(-n // self.workers)))}
        self.last = DataLoader(dataset, sampler=sampler, batch_size=None,
                               num_workers=self.workers, generator=generator, **parallel)
        return self.last

    def evidence(self) -> dict[str, Any]:
        """What the last real loader does: ``ordered`` is False when batches come back in the
        order workers finish them."""
        dl = self.last
        if dl is None:
            return {"num_workers": 0, "in_order": True, "ordered": True}
        in_order = bool(getattr(dl, "in_order", True))
        return {"num_workers": dl.num_workers, "in_order": in_order,
                "ordered": in_order or dl.num_workers == 0}
