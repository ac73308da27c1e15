"""The digits data: read from the file scikit-learn ships, equal to what sklearn loads."""
from __future__ import annotations

import numpy as np

from nora.trainers import data


def test_digits_read_directly_equal_sklearn_load_digits() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = data._digits_arrays()
    assert x.shape == (1797, 64) and np.array_equal(x, bunch.data)
    assert np.array_equal(y, bunch.target) and y.dtype.kind == "i"


def test_falls_back_to_sklearn_when_the_file_is_not_there(monkeypatch) -> None:
    import sklearn.datasets

    calls = []
    real = sklearn.datasets.load_digits
    monkeypatch.setattr(sklearn.datasets, "load_digits", lambda: calls.append(1) or real())
    direct = data._digits_arrays()
    assert calls == []
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    x, y = data._digits_arrays()
    assert calls == [1] and np.array_equal(x, direct[0]) and np.array_equal(y, direct[1])
