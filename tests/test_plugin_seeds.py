"""Per-test seeds: a case that fixes no seed trains with base + crc32(node id) (the
pytest-randomly convention), the same under xdist as in one process, and a failing case's
report says which seed it ran and how to rerun it."""
from __future__ import annotations

import zlib

import pandas as pd

pytest_plugins = ["pytester"]

CASES = """
import pytest

def test_free(nora_case, violation, nora_record):
    nora_record("case_seeds", list(nora_case.seeds or []))
    assert violation != "missing_seed", "fails on purpose"

@pytest.mark.nora(seeds=[3])
def test_marker(nora_case, nora_record):
    nora_record("case_seeds", list(nora_case.seeds or []))

@pytest.mark.nora(overrides=["seed=9"])
def test_override(nora_case, nora_record):
    nora_record("case_seeds", list(nora_case.seeds or []))
"""
ARGS = ["--nora-violations", "none,missing_seed", "-p", "no:randomly"]


def _seeds(pytester) -> dict[str, str]:
    df = pd.read_csv(pytester.path / "reports" / "latest" / "results.csv")
    return dict(zip(df["test_id"], df["metric.case_seeds"]))


def _crc(nodeid: str) -> int:
    return zlib.crc32(nodeid.encode())


def test_seeds_are_base_plus_crc32_of_the_node_id_on_every_worker(pytester):
    pytester.makepyfile(test_cases=CASES)
    one = pytester.runpytest(*ARGS)
    one.assert_outcomes(passed=3, failed=1)
    free = "test_cases.py::test_free[missing_seed]"
    expected = 42 + _crc(free)
    assert _seeds(pytester) == {
        free: f"[{expected}]", "test_cases.py::test_free[none]":
        f"[{42 + _crc('test_cases.py::test_free[none]')}]",
        "test_cases.py::test_marker": "[3]", "test_cases.py::test_override": "[]"}
    # the failure report names the seed, its origin and the rerun command
    one.stdout.fnmatch_lines([
        "*- NORA case -*", "*seeds=[[]" + str(expected) + "[]]*",
        f"per-test seed {expected} = base 42 + crc32('{free}') {_crc(free)}; rerun this case "
        f"alone with: pytest '{free}' --nora-seeds={expected}"])
    first = _seeds(pytester)
    two = pytester.runpytest(*ARGS, "-n", "2")
    two.assert_outcomes(passed=3, failed=1)
    assert _seeds(pytester) == first, "a test's seed does not depend on the worker"


def test_the_base_follows_the_ini_seed_and_null_means_unseeded(pytester):
    pytester.makepyfile(test_cases=CASES)
    pytester.makeini("[pytest]\nnora_overrides = seed=7\n")
    pytester.runpytest(*ARGS).assert_outcomes(passed=3, failed=1)
    assert _seeds(pytester)["test_cases.py::test_free[none]"] == \
        f"[{7 + _crc('test_cases.py::test_free[none]')}]"
    pytester.makeini("[pytest]\nnora_overrides = seed=null\n")
    pytester.runpytest(*ARGS).assert_outcomes(passed=3, failed=1)
    assert _seeds(pytester)["test_cases.py::test_free[none]"] == "[]"
    pytester.makeini("[pytest]\nnora_overrides = seed=x\n")
    bad = pytester.runpytest(*ARGS)
    bad.stdout.fnmatch_lines(["*ini nora_overrides: seed='x' is not an integer or null*"])
