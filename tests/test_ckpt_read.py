"""``read_state``, the audit's checkpoint reader, returns what ``torch.load(weights_only=True)``
returns, falls back to it for anything outside its subset, and calls nothing else."""
from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest
import torch

from nora.analysis.ckpt_read import read_state


def same(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert (a.dtype, a.shape, a.stride(), a.storage_offset(), a.requires_grad) == \
            (b.dtype, b.shape, b.stride(), b.storage_offset(), b.requires_grad), where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), where
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}.{i}")
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


def saved(tmp_path: Path, state) -> Path:
    path = tmp_path / "ckpt.pt"
    torch.save(state, path)
    return path


def test_plain_checkpoints_read_as_torch_load_reads_them(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    state = {
        "model": collections.OrderedDict(w=base, t=base.t(), row=base[1], tail=base[2:, 3:],
                                         half=torch.randn(3, generator=g).half(),
                                         bf16=torch.randn(3, generator=g).bfloat16(),
                                         mask=torch.tensor([True, False]),
                                         steps=torch.arange(5), empty=torch.zeros(0, 3),
                                         scalar=torch.tensor(2.5)),
        "optimizer": {"state": {0: {"step": torch.tensor(3.0)}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]},
        "scheduler": {"base_lrs": [1e-3], "last_epoch": 7, "lr_lambdas": [None]},
        "scaler": {}, "position": {"epoch": 1, "batch": 2, "step": 7},
        "rng": {"torch": torch.get_rng_state(), "python": {"state": torch.arange(3)}},
        "config_hash": "abc", "agent": None, "grad": torch.ones(2, requires_grad=True),
    }
    path = saved(tmp_path, state)
    expected = torch.load(path, map_location="cpu", weights_only=True)
    monkeypatch.setattr(torch, "load", None)          # read without falling back
    same(expected, read_state(path))


def test_what_the_fast_path_does_not_read_goes_to_torch_load(tmp_path):
    state = {"p": torch.nn.Parameter(torch.ones(2)), "size": torch.Size([2, 3]),
             "dtype": torch.float32}
    path = saved(tmp_path, state)
    got = read_state(path)
    assert isinstance(got["p"], torch.nn.Parameter) and got["size"] == torch.Size([2, 3])
    same(torch.load(path, map_location="cpu", weights_only=True), got)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_calls_anything_else_is_refused_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = saved(tmp_path, {"model": {}, "evil": _Payload(marker)})
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|global"):
        read_state(path)
    assert not marker.exists()


def test_a_damaged_file_raises_as_torch_load_does(tmp_path):
    path = saved(tmp_path, {"w": torch.ones(3)})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(Exception):
        read_state(path)
