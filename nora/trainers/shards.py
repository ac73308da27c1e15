"""How one training step is split across ranks: a single process, one DDP rank, or all
ranks emulated in one process (the bitwise reference a DDP run must match).

A global batch of ``batch_size x world_size`` samples is cut into per-rank shards of
``batch_size``; rank ``r`` augments with its own generator and draws dropout from its own
global-RNG stream, both derived from the run seed and the rank. DDP averages gradients as
``sum_r g_r / world_size``; emulation computes each ``g_r`` on its own (batch-norm batch
statistics per shard, running statistics kept from rank 0 as DDP's buffer broadcast does),
divides and sums them in rank order.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from nora.config.schema import DDPConfig
from nora.ddp_watch import heartbeat
from nora.errors import ConfigError
from nora.seeding import derive_seed, torch_generator


def current_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class Shards:
    def __init__(self, ddp: DDPConfig, seed: int,
                 make: Callable[..., torch.Generator] | None = None) -> None:
        self.world, self.seed = ddp.world_size, seed
        self.make = make or (lambda *names: torch_generator(seed, *names))
        distributed = dist.is_available() and dist.is_initialized()
        if self.world == 1:
            self.mode, self.ranks = "single", [0]
        elif ddp.emulate:
            self.mode, self.ranks = "emulate", list(range(self.world))
        elif distributed and dist.get_world_size() == self.world:
            self.mode, self.ranks = "ddp", [dist.get_rank()]
        else:
            raise ConfigError(f"ddp.world_size={self.world} needs a process group of that size "
                              "(nora.train spawns one) or ddp.emulate=true")
        self._rng = [torch.Generator().manual_seed(derive_seed(seed, "global", r)).get_state()
                     for r in self.ranks] if self.mode == "emulate" else []

    def generators(self, name: str) -> list[torch.Generator]:
        if self.mode == "single":
            return [self.make(name)]
        return [self.make(name, r) for r in self.ranks]

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        if self.mode != "ddp":
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def steps_per_epoch(self, n: int, batch_size: int) -> int:
        if self.mode == "single":
            return math.ceil(n / batch_size)
        return n // (batch_size * self.world)

    def batches(self, order: torch.Tensor, batch_size: int) -> list[list[int]]:
        """This process's sample indices for each step of an epoch."""
        if self.mode == "single":
            return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        g = batch_size * self.world
        full = [order[i:i + g] for i in range(0, len(order) - g + 1, g)]
        if self.mode == "emulate":
            return [b.tolist() for b in full]
        r = self.ranks[0]
        return [b[r * batch_size:(r + 1) * batch_size].tolist() for b in full]

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             gens: list[torch.Generator],
             backward: Callable[[torch.Tensor, torch.Tensor, torch.Generator], float]) -> float:
        """Leave this step's averaged gradients in ``model``; return rank 0's loss. In a DDP
        rank, each finished step is a heartbeat: the launcher's sign that the rank is alive."""
        if self.mode != "emulate":
            loss = backward(x, y, gens[0])
            heartbeat()
            return loss
        params = [p for p in model.parameters()]
        start = {k: v.clone() for k, v in model.named_buffers()}
        total: list[torch.Tensor] | None = None
        rank0_buffers, loss0 = None, math.nan
        for r, (xs, ys) in enumerate(zip(x.chunk(self.world), y.chunk(self.world))):
            self._load_buffers(model, start)
            torch.set_rng_state(self._rng[r])
            loss = backward(xs, ys, gens[r])
            self._rng[r] = torch.get_rng_state()
            share = [p.grad / self.world for p in params]
            total = share if total is None else [a + b for a, b in zip(total, share)]
            for p in params:
                p.grad = None
            if r == 0:
                loss0 = loss
                rank0_buffers = {k: v.clone() for k, v in model.named_buffers()}
        for p, g in zip(params, total or []):
            p.grad = g
        self._load_buffers(model, rank0_buffers or start)
        return loss0

    @staticmethod
    def _load_buffers(model: nn.Module, values: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, buf in model.named_buffers():
                buf.copy_(values[name])
