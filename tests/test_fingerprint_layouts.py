"""fingerprint refuses tensors whose bytes are not their values, naming the layout or dtype."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from nora import fingerprint
from nora.analysis.compare import compare
from nora.errors import NoraError


def _quantized() -> torch.Tensor:
    with warnings.catch_warnings():          # quantized tensor creation is deprecated in torch
        warnings.simplefilter("ignore")
        return torch.quantize_per_tensor(torch.tensor([0.5, -1.0]), 0.1, 0, torch.qint8)


def _sparse(layout: str) -> torch.Tensor:
    with warnings.catch_warnings():          # CSR / BSR support is "beta"
        warnings.simplefilter("ignore")
        dense = torch.eye(4)
        return {"coo": dense.to_sparse, "csr": dense.to_sparse_csr,
                "csc": dense.to_sparse_csc,
                "bsr": lambda: dense.to_sparse_bsr((2, 2))}[layout]()


@pytest.mark.parametrize(("make", "needle"), [
    (lambda: _sparse("coo"), "layout torch.sparse_coo"),
    (lambda: _sparse("csr"), "layout torch.sparse_csr"),
    (lambda: _sparse("csc"), "layout torch.sparse_csc"),
    (lambda: _sparse("bsr"), "layout torch.sparse_bsr"),
    (_quantized, "dtype torch.qint8"),
    (lambda: torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)],
                                        layout=torch.jagged), "nested tensor (layout torch.jagged"),
    (lambda: torch.zeros(3).to_mkldnn(), "layout torch._mkldnn"),
    (lambda: torch.empty(3, device="meta"), "meta tensor"),
    (lambda: np.array([1, "a"], dtype=object), "dtype object"),
], ids=["coo", "csr", "csc", "bsr", "qint8", "nested", "mkldnn", "meta", "object-array"])
def test_unsupported_tensors_raise_a_type_error_naming_them(make, needle: str) -> None:
    obj = make()
    with pytest.raises(TypeError, match="fingerprint: cannot hash") as info:
        fingerprint(obj)
    assert needle in str(info.value)
    with pytest.raises(TypeError, match=needle.replace("(", r"\(")):   # also inside a state dict
        fingerprint({"layer.weight": obj})


def test_compare_reports_the_unsupported_tensor_as_a_nora_error() -> None:
    with pytest.raises(NoraError, match="sparse_coo"):
        compare({"w": _sparse("coo")}, {"w": _sparse("coo")})


def test_quantized_tensors_with_equal_integers_are_not_silently_equal() -> None:
    """The reason quantized tensors are refused: their stored integers ignore the scale."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = torch.quantize_per_tensor(torch.tensor([1.0]), 0.1, 0, torch.qint8)
        b = torch.quantize_per_tensor(torch.tensor([2.0]), 0.2, 0, torch.qint8)
    assert torch.equal(a.int_repr(), b.int_repr()) and not torch.equal(a.dequantize(),
                                                                        b.dequantize())
    assert fingerprint(a.dequantize()) != fingerprint(b.dequantize())   # the suggested way


def test_lazy_views_and_strided_single_elements_hash_by_value() -> None:
    z = torch.tensor([1 + 2j, 3 - 4j])
    assert fingerprint(z.conj()) == fingerprint(torch.tensor([1 - 2j, 3 + 4j]))
    assert fingerprint(z.conj().imag) == fingerprint(torch.tensor([-2.0, 4.0]))   # neg view
    column = torch.arange(6.0).reshape(3, 2)[0:1, 1]          # one element, stride 2
    assert column.stride() == (2,)
    assert fingerprint(column) == fingerprint(torch.tensor([1.0]))
    assert fingerprint(z.conj().imag[:1]) == fingerprint(torch.tensor([-2.0]))
