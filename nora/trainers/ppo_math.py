"""The arithmetic of PPO as pure functions: GAE, the three losses, KL, sampling, schedules.

Nothing here holds state or touches an RNG; randomness comes in as tensors drawn by the
caller from an explicit generator. That keeps each piece testable against numbers worked
out by hand, and keeps ``ppo_engine`` down to bookkeeping.
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "approx_kl", "clip_fraction", "clipped_policy_loss", "compute_gae", "entropy",
    "gumbel_noise", "logprob", "normalize", "sample_gumbel_max", "schedule", "value_loss",
]


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor,
                terminated: torch.Tensor, truncated: torch.Tensor, *, gamma: float,
                gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and returns over a ``[T, N]`` rollout.

    ``next_values[t]`` is V of the observation that followed step ``t``. On truncation that
    must be the episode's *final* observation (not the reset one), so the cut-off episode is
    bootstrapped: ``delta = r + gamma * V(final) - V``. On termination nothing is
    bootstrapped. Either way the advantage recursion stops at the episode boundary.

    Returns:
        ``(advantages, returns)`` with ``returns = advantages + values``.
    """
    not_term = 1.0 - terminated.to(values.dtype)
    not_done = 1.0 - (terminated | truncated).to(values.dtype)
    deltas = rewards + gamma * next_values * not_term - values
    decay = gamma * gae_lambda * not_done
    advantages = torch.empty_like(values)
    last = torch.zeros_like(values[0])
    for t in range(values.shape[0] - 1, -1, -1):
        last = deltas[t] + decay[t] * last
        advantages[t] = last
    return advantages, advantages + values


def logprob(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Log-probability of ``actions`` under categorical ``logits`` (no torch.distributions).

    Selected with a mask rather than ``gather``: the backward pass is then elementwise, with
    no scatter-add whose CUDA kernel may accumulate in a nondeterministic order. Adding the
    masked zeros is exact, so the value equals the gathered one bit for bit.
    """
    logp = torch.log_softmax(logits, dim=-1)
    onehot = actions.unsqueeze(-1) == torch.arange(logits.shape[-1], device=logits.device)
    return torch.where(onehot, logp, 0.0).sum(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-row entropy of categorical ``logits``."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def gumbel_noise(uniform: torch.Tensor) -> torch.Tensor:
    """Turn uniforms in [0, 1) into standard Gumbel noise (0 maps to -inf: never chosen)."""
    return -torch.log(-torch.log(uniform))


def sample_gumbel_max(logits: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Exact categorical sample: ``argmax(logits + Gumbel)``.

    Unlike ``torch.multinomial`` this has no nondeterministic CUDA path, and the noise can
    be drawn for a whole rollout in one call.
    """
    return (logits + noise).argmax(-1)


def clipped_policy_loss(logratio: torch.Tensor, advantages: torch.Tensor,
                        clip_eps: float) -> torch.Tensor:
    """PPO's pessimistic surrogate: ``mean(max(-A r, -A clip(r, 1-eps, 1+eps)))``."""
    ratio = logratio.exp()
    pg1 = -advantages * ratio
    pg2 = -advantages * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    return torch.max(pg1, pg2).mean()


def value_loss(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """``0.5 * mean((V - R)^2)``, CleanRL's unclipped value loss."""
    return 0.5 * (values - returns).pow(2).mean()


def approx_kl(logratio: torch.Tensor) -> torch.Tensor:
    """Low-variance, non-negative KL(old || new) estimate ``mean((r - 1) - log r)``."""
    return ((logratio.exp() - 1.0) - logratio).mean()


def clip_fraction(logratio: torch.Tensor, clip_eps: float) -> torch.Tensor:
    """Share of samples whose ratio left the clip range."""
    return ((logratio.exp() - 1.0).abs() > clip_eps).float().mean()


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero-mean, unit-std copy of ``x``; a single element is only centred."""
    if x.numel() < 2:
        return x - x.mean()
    return (x - x.mean()) / (x.std() + eps)


def schedule(kind: str, start: float, end: float, step: int, total: int) -> float:
    """Value of a decay from ``start`` to ``end`` at iteration ``step`` of ``total``.

    ``constant`` stays at ``start``; ``linear`` and ``cosine`` reach ``end`` at
    ``step == total`` (so iteration ``total - 1``, the last one run, is still above it).
    Steps past ``total`` stay at ``end``.
    """
    if total <= 0:
        raise ValueError(f"schedule: total must be positive, got {total!r}")
    progress = min(max(step / total, 0.0), 1.0)
    if kind == "constant":
        return float(start)
    if kind == "linear":
        return float(start + (end - start) * progress)
    if kind == "cosine":
        return float(end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"schedule: kind must be one of constant, linear, cosine; got {kind!r}")
