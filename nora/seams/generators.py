"""Every generator a trainer draws from, with its provenance: seeded from the run seed or
from OS entropy (an unseeded run). The provenance is what the missing-seed detector reads."""
from __future__ import annotations

from typing import Any

import torch

from nora.hashing import fingerprint
from nora.seeding import derive_seed


class Generators:
    def __init__(self, seed: int, source: str) -> None:
        self.seed, self.source = seed, source
        self._made: dict[str, torch.Generator] = {}
        self.provenance: dict[str, str] = {"global": source}

    def get(self, *names: object, device: str = "cpu", per_epoch: bool = False
            ) -> torch.Generator:
        """The generator of one named stream (``get("augment", rank)``), created once.
        ``per_epoch``: the last name is an epoch, and the previous epoch's generator of the
        stream is forgotten (its state no longer matters to the run)."""
        key = ".".join(str(n) for n in names)
        if per_epoch and key not in self._made:
            prefix = ".".join(str(n) for n in names[:-1]) + "."
            for old in [k for k in self._made if k.startswith(prefix)]:
                del self._made[old]
        if key not in self._made:
            g = torch.Generator(device=device)
            g.manual_seed(derive_seed(self.seed, *names))
            self._made[key] = g
            self.provenance[key.rsplit(".", 1)[0] if per_epoch else key] = self.source
        return self._made[key]

    def adopt(self, key: str, generator: torch.Generator) -> torch.Generator:
        """Track a generator the trainer seeded itself from ``derive_seed(ctx.seed, ...)``."""
        self._made[key] = generator
        self.provenance[key] = self.source
        return generator

    def reseed(self, seed: int, source: str) -> None:
        """Re-derive every stream from a new seed (the missing-seed fix, before training)."""
        self.seed, self.source = seed, source
        for key, g in self._made.items():
            g.manual_seed(derive_seed(seed, *key.split(".")))
        self.provenance = {k: source for k in self.provenance}

    def states(self) -> dict[str, torch.Tensor]:
        return {k: g.get_state() for k, g in self._made.items()}

    def load_states(self, states: dict[str, Any]) -> None:
        for k, s in states.items():
            if k in self._made:
                self._made[k].set_state(s)

    def state_hash(self) -> str:
        """One hash of every tracked state and torch's global one: equal inputs, equal draws."""
        return fingerprint({"global": torch.get_rng_state(), **self.states()})
