"""The precision policy: ``autocast()``, ``backward(loss)`` and the optimizer ``step``, with
or without a GradScaler. Reports whether the last loss and gradients were finite."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator

import torch


def _nonfinite(params: list[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of parameters with a non-finite gradient: one fused norm over all gradients
    first (read-only), the per-tensor look only when something is off."""
    named = [(n, p.grad) for n, p in params if p.grad is not None]
    if not named:
        return []
    norms = torch._foreach_norm([g for _, g in named])
    if bool(torch.isfinite(torch.stack(norms)).all()):
        return []
    return [n for (n, _), norm in zip(named, norms) if not torch.isfinite(norm)]


class Precision:
    def __init__(self, device_type: str, amp: bool, dtype: torch.dtype = torch.float16,
                 *, scaler: bool | None = None) -> None:
        self.device_type, self.amp, self.dtype = device_type, amp, dtype
        self.static_loss_scale: float | None = None
        use_scaler = amp if scaler is None else scaler
        self.scaler: torch.amp.GradScaler | None = (
            torch.amp.GradScaler(device_type) if use_scaler else None)
        self.skip_next = False
        self.check_finite = False
        self.last_loss = 0.0
        self.nonfinite: list[str] = []

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.amp):
            yield

    def backward(self, loss: torch.Tensor, named_params: Iterable[tuple[str, torch.Tensor]]
                 ) -> float:
        """Backward through the policy; gradients left unscaled for clipping."""
        params = list(named_params)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        elif self.amp and self.static_loss_scale:
            (loss * self.static_loss_scale).backward()
            for _, p in params:
                if p.grad is not None:
                    p.grad.div_(self.static_loss_scale)
        else:
            loss.backward()
        self.last_loss = float(loss.item())
        self.nonfinite = []
        if self.check_finite and self.scaler is None:
            self.nonfinite = _nonfinite(params)
        return self.last_loss

    @property
    def finite(self) -> bool:
        return math.isfinite(self.last_loss) and not self.nonfinite

    def step(self, optimizer: torch.optim.Optimizer, clip: tuple[list, float] | None = None
             ) -> bool:
        """One optimizer step (unscaling and clipping first); False when it was skipped."""
        if self.skip_next:
            self.skip_next = False
            optimizer.zero_grad(set_to_none=True)
            optimizer._opt_called = True  # a deliberately skipped step; keeps schedules in step
            return False
        if self.scaler is not None:
            if clip is not None:
                self.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(clip[0], clip[1])
            self.scaler.step(optimizer)
            self.scaler.update()
            return True
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(clip[0], clip[1])
        optimizer.step()
        return True

    def drop_scaler(self, static_loss_scale: float) -> None:
        """fp16 with a static loss scale and no GradScaler (how amp_nan is injected)."""
        self.amp, self.dtype, self.scaler = True, torch.float16, None
        self.static_loss_scale = static_loss_scale

    def enable_scaler(self) -> None:
        """Dynamic loss scaling from the next step on; the overflowing step is skipped."""
        self.amp, self.dtype, self.static_loss_scale = True, torch.float16, None
        self.scaler = torch.amp.GradScaler(self.device_type)
        self.skip_next = True

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {"enabled": False}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("enabled", True):
            self.scaler.load_state_dict(state)
