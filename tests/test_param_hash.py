"""``StepHasher`` gives exactly ``tree_hash(model.state_dict())``, step after step, whatever
the model does to its tensors, and falls back where it cannot vouch for its shortcut."""
from __future__ import annotations

import torch
from torch import nn

from nora.hashing import tree_hash
from nora.param_hash import StepHasher


class Odd(nn.Module):
    """Buffers of every kind: non-persistent, None, 0-dim, empty, bool, int, complex."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)
        self.register_buffer("scratch", torch.ones(2), persistent=False)
        self.register_buffer("absent", None)
        self.register_buffer("mask", torch.tensor([True, False]))
        self.register_buffer("empty", torch.zeros(0, 3))
        self.register_buffer("z", torch.tensor([1 + 2j]))
        self.register_buffer("count", torch.tensor(7))


def _same(hasher: StepHasher, model: nn.Module) -> None:
    assert hasher(model) == tree_hash(model.state_dict())


def test_equal_to_the_state_dict_tree_hash_through_training_and_replacement():
    torch.manual_seed(0)
    model, hasher = Odd(), StepHasher(recheck=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(5):
        _same(hasher, model)
        model.bn(model.lin(torch.randn(5, 4))).sum().backward()
        opt.step()
        if step == 2:                                     # a tensor replaced: seen at once
            model.lin.bias = nn.Parameter(torch.zeros(3))
    _same(hasher, model)
    assert hasher._leaves is not None                   # the short way
    model.mask = torch.tensor([True, True, False])        # dtype and shape changes
    model.half()
    _same(hasher, model)
    other = nn.Sequential(nn.Linear(2, 2))                # another model: new tables
    _same(hasher, other)


def test_a_module_whose_state_dict_is_not_its_tables_goes_the_long_way():
    class Scaled(nn.Linear):
        def _save_to_state_dict(self, destination, prefix, keep_vars):
            destination[prefix + "weight"] = self.weight.detach() * 2
            destination[prefix + "bias"] = self.bias.detach()

    model, hasher = Scaled(3, 3), StepHasher()
    _same(hasher, model)
    assert hasher._leaves is None


def test_views_and_non_contiguous_tensors_hash_by_value():
    model = nn.Linear(3, 3)
    model.weight = nn.Parameter(torch.randn(3, 3).t())    # non-contiguous
    model.register_buffer("one", torch.arange(6.0).reshape(3, 2)[0:1, 1])  # stride 2
    model.register_buffer("neg", torch.tensor([1 + 2j, 3 - 4j]).conj().imag)  # lazy neg view
    _same(StepHasher(), model)


def test_a_tensor_changed_behind_the_tables_back_is_seen():
    model, hasher = nn.Linear(3, 3, bias=False), StepHasher(recheck=10**6)
    _same(hasher, model)
    with torch.no_grad():
        model.weight.data = model.weight.data.t()           # same address, other strides
    _same(hasher, model)
    model.weight.data = torch.zeros(3, 3)                   # same object, new storage
    _same(hasher, model)
    model.weight.data.fill_(2.0)                            # in place: same view, new bytes
    _same(hasher, model)
