"""A pytest plugin for bench_xdist.py: times each trainer's ``fit()`` inside each test.

Loaded with ``-p _fit_timer`` (``benchmarks/`` on ``PYTHONPATH``). It wraps ``fit`` of every
trainer class it can find (the ``nora.trainers`` entry points, else the built-in modules)
and adds one ``bench.fit_sec`` property per call to the running test, so junitxml carries,
per case, the test's whole time and the part of it that was training: the rest is NORA.
CPU time (``time.process_time``, this process only) is recorded beside wall time: on a
shared machine the wall clock also measures the neighbours, the CPU time much less so.
"""
from __future__ import annotations

import functools
import importlib
import time
from importlib.metadata import entry_points

import pytest

BUILT_IN = ("nora.trainers.supervised:SupervisedTrainer", "nora.trainers.ppo:PPOTrainer")
_current: list[pytest.Item] = []


def _classes() -> list[type]:
    specs = [ep.value for ep in entry_points(group="nora.trainers")] or list(BUILT_IN)
    out = []
    for spec in specs:
        module, _, name = spec.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in name.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            continue
        if isinstance(obj, type) and callable(getattr(obj, "fit", None)):
            out.append(obj)
    return out


def _wrap(cls: type) -> None:
    fit = cls.fit
    if getattr(fit, "_bench_timed", False):
        return

    @functools.wraps(fit)
    def timed(self, *args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return fit(self, *args, **kwargs)
        finally:
            if _current:
                _current[-1].user_properties += [
                    ("bench.fit_sec", round(time.perf_counter() - t0, 6)),
                    ("bench.fit_cpu_sec", round(time.process_time() - c0, 6))]

    timed._bench_timed = True
    cls.fit = timed


def pytest_configure(config: pytest.Config) -> None:
    classes = _classes()
    if not classes:
        raise pytest.UsageError("_fit_timer: no trainer class with fit() found")
    for cls in classes:
        _wrap(cls)


_START = pytest.StashKey[float]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    _current.append(item)
    item.stash[_START] = time.process_time()
    try:
        yield
    finally:
        _current.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Before the teardown report is made (it carries the properties to junitxml)."""
    if call.when == "teardown" and _START in item.stash:
        item.user_properties.append(
            ("bench.test_cpu_sec", round(time.process_time() - item.stash[_START], 6)))
    yield
