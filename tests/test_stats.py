"""Multi-seed statistics against values worked out by hand on small fixed samples."""
from __future__ import annotations

import json
import math

import pytest
import scipy.stats

from nora.analysis.stats import SeedStats, interquartile_mean, seed_stats
from nora.errors import NoraError


def test_four_values_by_hand() -> None:
    s = seed_stats([4.0, 1.0, 3.0, 2.0])
    assert s.n == 4
    assert s.mean == pytest.approx(2.5)                      # (1+2+3+4)/4
    # deviations -1.5 -0.5 0.5 1.5 -> squares sum 2.25+0.25+0.25+2.25 = 5; / (n-1) = 5/3
    assert s.std == pytest.approx(math.sqrt(5.0 / 3.0))
    assert s.iqm == pytest.approx(2.5)                       # middle 50% of 1,2,3,4 = (2+3)/2
    assert s.ci_low is not None and s.ci_high is not None
    assert 1.0 <= s.ci_low <= s.mean <= s.ci_high <= 4.0


def test_five_values_by_hand() -> None:
    s = seed_stats([0.1, 0.4, 0.2, 0.9, 0.3])
    assert s.mean == pytest.approx(0.38)                     # 1.9 / 5
    # deviations -0.28 -0.18 -0.08 0.02 0.52 -> squares 0.0784 0.0324 0.0064 0.0004 0.2704
    # sum 0.388; / 4 = 0.097
    assert s.std == pytest.approx(math.sqrt(0.097))
    # sorted 0.1 0.2 0.3 0.4 0.9 covering [0,5]; keep [1.25, 3.75]:
    # 0.75*0.2 + 1*0.3 + 0.75*0.4 = 0.75, over a width of 2.5 -> 0.3
    assert s.iqm == pytest.approx(0.3)


@pytest.mark.parametrize(("values", "expected"), [
    ([10.0, 1.0, 2.0], (0.25 * 1 + 1 * 2 + 0.25 * 10) / 1.5),   # keep [0.75, 2.25] of [0, 3]
    ([6.0, 1.0, 5.0, 2.0, 4.0, 3.0], (0.5 * 2 + 3 + 4 + 0.5 * 5) / 3.0),  # keep [1.5, 4.5]
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0], (3 + 4 + 5 + 6) / 4.0),  # n % 4 == 0
    ([0.7], 0.7),
])
def test_interquartile_mean_fractional_boundaries(values: list[float], expected: float) -> None:
    assert interquartile_mean(values) == pytest.approx(expected)


def test_iqm_matches_scipy_trim_mean_when_n_divisible_by_4() -> None:
    values = [0.3, 9.0, -1.0, 2.5, 2.0, 0.0, 7.5, 1.25]
    assert interquartile_mean(values) == pytest.approx(scipy.stats.trim_mean(values, 0.25))


def test_two_values_ci_spans_both() -> None:
    s = seed_stats([1.0, 3.0])
    assert (s.mean, s.iqm) == (2.0, 2.0)
    assert s.std == pytest.approx(math.sqrt(2.0))            # ((-1)^2 + 1^2) / 1
    # resampled means are 1, 2, 3 with probability 1/4, 1/2, 1/4, so the 2.5% and 97.5%
    # points of the bootstrap distribution are the two values themselves
    assert (s.ci_low, s.ci_high) == (1.0, 3.0)
    assert s.ci_width == 2.0
    assert s.within(2.0) and not s.within(1.99)


def test_single_seed_has_no_spread() -> None:
    s = seed_stats([0.7])
    assert (s.n, s.mean, s.iqm) == (1, 0.7, 0.7)
    assert s.std is None and s.ci_low is None and s.ci_high is None and s.ci_width is None
    assert s.method == "none"
    assert not s.within(10.0)                                # unknown spread never passes a gate


def test_constant_values_zero_width() -> None:
    s = seed_stats([0.5, 0.5, 0.5])
    assert (s.ci_low, s.ci_high, s.ci_width, s.std) == (0.5, 0.5, 0.0, 0.0)
    assert s.method == "constant" and s.within(0.0)


def test_bootstrap_is_reproducible_and_plain_json() -> None:
    values = [0.81, 0.79, 0.84, 0.80, 0.77, 0.83]
    a, b = seed_stats(values), seed_stats(values)
    assert a == b
    d = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    assert d["ci_width"] == pytest.approx(a.ci_high - a.ci_low)
    assert d["values"] == values and d["method"] == "BCa" and d["bootstrap_seed"] == 0
    fields = {k: v for k, v in d.items() if k != "ci_width"} | {"values": tuple(values)}
    assert SeedStats(**fields) == a


def test_confidence_level_changes_width() -> None:
    values = [0.1, 0.4, 0.2, 0.9, 0.3, 0.5, 0.35]
    wide = seed_stats(values, confidence_level=0.99)
    narrow = seed_stats(values, confidence_level=0.5)
    assert narrow.ci_width < wide.ci_width


@pytest.mark.parametrize(("values", "needle"), [
    ([], "non-empty"), ([1.0, float("nan")], "values[1]"), ([1.0, float("inf")], "values[1]"),
    (["a", "b"], "numbers"),
])
def test_bad_values_are_named(values: list, needle: str) -> None:
    with pytest.raises(NoraError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        seed_stats(values)


def test_bad_bound_is_named() -> None:
    with pytest.raises(NoraError, match="max_ci_width"):
        seed_stats([1.0, 2.0]).within(-0.1)
    with pytest.raises(NoraError, match="confidence_level"):
        seed_stats([1.0, 2.0], confidence_level=1.5)
