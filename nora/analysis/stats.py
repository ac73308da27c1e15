"""Statistics of one experiment's metric across seeds, so CI can gate on the spread.

One seed says nothing about how much a result depends on luck; the report gives the mean,
the standard deviation, the interquartile mean (robust to one diverging seed) and a 95%
bootstrap confidence interval of the mean. The bootstrap draws from a fixed
``numpy.random.Generator`` seed, so the same values always give the same interval.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from nora.errors import NoraError

__all__ = ["SeedStats", "interquartile_mean", "seed_stats"]


@dataclass(frozen=True)
class SeedStats:
    """Summary of one metric over ``n`` seeds; ``ci_low``/``ci_high`` are None when n == 1."""

    n: int
    mean: float
    std: float | None          # sample standard deviation (ddof=1); None for n == 1
    iqm: float
    ci_low: float | None
    ci_high: float | None
    confidence_level: float
    method: str        # "BCa", "percentile", "constant" (all values equal), "none" (n == 1)
    n_resamples: int
    bootstrap_seed: int
    values: tuple[float, ...]

    @property
    def ci_width(self) -> float | None:
        """Width of the confidence interval, or None when there is none (a single seed)."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_high - self.ci_low

    def within(self, max_ci_width: float) -> bool:
        """True when the CI is at most ``max_ci_width`` wide.

        A single seed has no interval, so its spread is unknown and the answer is False:
        a gate that asks for a bound must be given at least two seeds.
        """
        if (not isinstance(max_ci_width, (int, float)) or math.isnan(max_ci_width)
                or max_ci_width < 0):
            raise NoraError(f"max_ci_width must be a number >= 0, got {max_ci_width!r}")
        width = self.ci_width
        return width is not None and width <= max_ci_width

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``ci_width`` included, ``values`` as a list)."""
        out = asdict(self)
        out["values"] = list(self.values)
        out["ci_width"] = self.ci_width
        return out


def interquartile_mean(values: Sequence[float]) -> float:
    """Mean of the middle 50% of the sorted values, boundary samples weighted fractionally.

    Each sorted value covers one unit of the interval [0, n]; the IQM averages the part
    [n/4, 3n/4], so a value straddling a quartile counts with the fraction inside it.
    For n divisible by 4 this equals ``scipy.stats.trim_mean(x, 0.25)`` (and rliable's IQM);
    for other n, ``trim_mean`` rounds the number of trimmed values down instead (for n=3 it
    trims nothing), which this avoids.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n == 0:
        raise NoraError("interquartile_mean: values must not be empty, got []")
    lo, hi = n / 4.0, 3.0 * n / 4.0
    starts = np.arange(n, dtype=np.float64)
    weights = np.clip(np.minimum(starts + 1.0, hi) - np.maximum(starts, lo), 0.0, 1.0)
    return float(np.dot(weights, x) / (hi - lo))


def _check_values(values: Sequence[float]) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise NoraError(f"seed_stats: values must be numbers, got {values!r}") from exc
    if x.ndim != 1 or x.size == 0:
        raise NoraError(f"seed_stats: values must be a non-empty 1-d sequence, got {values!r}")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        i = int(bad[0])
        raise NoraError(f"seed_stats: values[{i}] is {float(x[i])!r}; a metric across seeds must be "
                        "finite (a diverged seed is a failure to report, not a sample to average)")
    return x


def _bootstrap_ci(x: np.ndarray, confidence_level: float, n_resamples: int,
                  seed: int) -> tuple[float, float, str]:
    if np.all(x == x[0]):
        return float(x[0]), float(x[0]), "constant"     # every resample has the same mean
    for method in ("BCa", "percentile"):               # BCa is scipy's default; it can be
        with warnings.catch_warnings():                  # degenerate on tiny samples
            warnings.simplefilter("ignore")
            res = _scipy_stats.bootstrap((x,), np.mean, n_resamples=n_resamples,
                                         confidence_level=confidence_level, method=method,
                                         vectorized=True, rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return low, high, method
    raise NoraError(f"seed_stats: bootstrap gave no finite interval for values {x.tolist()!r}")


def seed_stats(values: Sequence[float], *, confidence_level: float = 0.95,
               n_resamples: int = 9999, bootstrap_seed: int = 0) -> SeedStats:
    """Summarize one metric measured under several seeds.

    Args:
        values: the metric, one value per seed (finite numbers).
        confidence_level: of the bootstrap interval of the mean.
        n_resamples: bootstrap resamples (scipy's default).
        bootstrap_seed: seed of the ``numpy.random.Generator`` the bootstrap draws from,
            fixed so a report is reproducible.

    Returns:
        ``SeedStats``; with one value there is no standard deviation and no interval (None).
    """
    if not 0.0 < confidence_level < 1.0:
        raise NoraError(f"confidence_level must be in (0, 1), got {confidence_level!r}")
    if not isinstance(n_resamples, int) or n_resamples < 1:
        raise NoraError(f"n_resamples must be a positive int, got {n_resamples!r}")
    x = _check_values(values)
    n = int(x.size)
    if n == 1:
        std, low, high, method = None, None, None, "none"
    else:
        std = float(np.std(x, ddof=1))
        low, high, method = _bootstrap_ci(x, confidence_level, n_resamples, bootstrap_seed)
    return SeedStats(n=n, mean=float(np.mean(x)), std=std, iqm=interquartile_mean(x),
                     ci_low=low, ci_high=high, confidence_level=confidence_level,
                     method=method, n_resamples=n_resamples, bootstrap_seed=bootstrap_seed,
                     values=tuple(float(v) for v in x))
