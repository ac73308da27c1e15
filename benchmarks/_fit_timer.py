"""A pytest plugin for bench_xdist.py: times the trainer's own code inside each test.

Loaded with ``-p _fit_timer`` (``benchmarks/`` on ``PYTHONPATH``). It wraps the methods of
the trainer protocol (``__init__``: building model, data and optimizer; ``fit``; ``load``;
``final_state``) of every trainer class it can find (the ``nora.trainers`` entry points,
else the built-in modules) and adds one ``bench.fit_sec`` property per outermost call to the
running test, so junitxml carries, per case, the test's whole time and the part of it that
was the trainer's: the rest is NORA.
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


_depth = [0]                      # only the outermost trainer call is timed
TIMED = ("__init__", "fit", "load", "final_state")


def _wrap(cls: type, name: str) -> None:
    method = cls.__dict__.get(name)
    if method is None or getattr(method, "_bench_timed", False):
        return

    @functools.wraps(method)
    def timed(self, *args, **kwargs):
        _depth[0] += 1
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return method(self, *args, **kwargs)
        finally:
            _depth[0] -= 1
            if _current and _depth[0] == 0:
                _current[-1].user_properties += [
                    ("bench.fit_sec", round(time.perf_counter() - t0, 6)),
                    ("bench.fit_cpu_sec", round(time.process_time() - c0, 6))]

    timed._bench_timed = True
    setattr(cls, name, timed)


def pytest_configure(config: pytest.Config) -> None:
    classes = _classes()
    if not classes:
        raise pytest.UsageError("_fit_timer: no trainer class with fit() found")
    for cls in classes:
        for name in TIMED:
            _wrap(cls, name)


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
