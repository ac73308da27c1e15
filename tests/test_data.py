"""The digits data: read from the file scikit-learn ships, equal to what sklearn loads."""
from __future__ import annotations

import sys

import numpy as np

from nora.trainers import data


def test_digits_read_directly_equal_sklearn_load_digits() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = data._digits_arrays()
    assert x.shape == (1797, 64) and np.array_equal(x, bunch.data)
    assert np.array_equal(y, bunch.target) and y.dtype.kind == "i"


def test_falls_back_to_sklearn_when_the_file_is_not_there(monkeypatch) -> None:
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    x, y = data._digits_arrays()
    assert x.shape == (1797, 64) and set(np.unique(y)) == set(range(10))
    assert "sklearn.datasets" in sys.modules
