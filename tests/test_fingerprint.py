from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from nora import fingerprint

CODE = ("import torch; from nora import fingerprint; g = torch.Generator().manual_seed(0); "
        "print(fingerprint({'w': torch.randn(5, 3, generator=g), 'n': 3, 'x': [1.5, None]}))")


def test_equal_values_equal_hash_and_any_change_differs():
    a = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}
    assert fingerprint(a) == fingerprint({k: v.clone() for k, v in a.items()})
    assert fingerprint(a) != fingerprint({**a, "b": torch.tensor([0.0, 0.0, 1e-30])})
    assert fingerprint(torch.zeros(2, 3)) != fingerprint(torch.zeros(3, 2))
    assert fingerprint(torch.zeros(3)) != fingerprint(torch.zeros(3, dtype=torch.float64))
    assert fingerprint(torch.zeros(3)) != fingerprint(np.zeros(3, dtype=np.float32))


def test_non_contiguous_and_scalar_tensors():
    t = torch.arange(12.0).reshape(3, 4)
    assert fingerprint(t.t()) == fingerprint(t.t().contiguous())
    assert fingerprint(torch.tensor(3)) != fingerprint(torch.tensor(4))


def test_stable_across_processes():
    outs = {subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": str(s), "PATH": ""}).stdout
            for s in (1, 2)}
    assert len(outs) == 1


def test_one_pass_gives_the_fingerprint_and_every_tensor_hash():
    from nora.hashing import fingerprint_and_hashes, tensor_hashes

    t = torch.arange(12.0).reshape(3, 4)
    state = {"w": t.t(), "b": torch.zeros(0), "i": torch.arange(5, dtype=torch.int64),
             "s": torch.tensor(2.5, dtype=torch.float64), "h": torch.ones(3).half(),
             "n": np.arange(4), "nested": {"x": [t, 1.5, None]}, 7: torch.ones(1)}
    fp, hashes = fingerprint_and_hashes(state)
    assert fp == fingerprint(state)
    assert list(hashes.items()) == list(tensor_hashes(state).items())
    assert fingerprint_and_hashes({**state, "w": t.t() + 1})[0] != fp
