"""Helpers shared by the core tests: small, fast configs and a halt-tolerant runner."""
from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from torch.utils.data import get_worker_info

import nora

SMALL = ["train.epochs=1", "trainer.train_subset=256"]


@pytest.fixture
def run_case(tmp_path: Path):
    """``run_case(*overrides)`` trains in a fresh directory and returns the RunResult,
    also when the agent halted the run."""
    counter = itertools.count()

    def _run(*overrides: str, small: bool = True, **kwargs) -> nora.RunResult:
        config = nora.load_config([*(SMALL if small else []), *overrides])
        try:
            return nora.train(config, run_dir=tmp_path / f"run{next(counter)}", **kwargs)
        except nora.NormViolationError as exc:
            return exc.result

    return _run


@contextlib.contextmanager
def slow_loader_worker(dataset_cls: type, worker: int, delay: float = 0.1) -> Iterator[None]:
    """Make one DataLoader worker slower than the other (forked workers inherit the patch),
    so the outcome of the unordered-loading race is decided rather than left to the OS. The
    delay dwarfs the other worker's start-up lag on a loaded machine (a 4 ms one did not:
    the worker forked first could still finish first)."""
    original = dataset_cls.__getitem__

    def getitem(self, item):
        info = get_worker_info()
        if info is not None and info.id == worker:
            time.sleep(delay)
        return original(self, item)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dataset_cls, "__getitem__", getitem)
        yield
