"""scikit-learn's bundled 8x8 digits, a fixed train/test split, batch-wise augmentation."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from nora.hashing import fingerprint

SPLIT_SEED = 0  # the split is part of the dataset, not of the run


@dataclass(frozen=True)
class Digits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def fingerprint(self) -> str:
        return fingerprint([self.x_train, self.y_train, self.x_test, self.y_test])


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits, read from the file it ships. Importing sklearn costs
    about 1.1 s (scipy.stats among it) in every process that trains: each xdist worker, DDP
    rank and isolated replica; reading the same CSV takes milliseconds."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    roots = spec.submodule_search_locations if spec else None
    path = Path(next(iter(roots))) / "datasets" / "data" / "digits.csv.gz" if roots else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits as sk_load

        bunch = sk_load()
        return bunch.data, bunch.target
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)


@lru_cache(maxsize=8)
def load_digits(test_fraction: float, train_subset: int | None) -> Digits:
    data, target = _digits_arrays()
    x = torch.from_numpy((data / 16.0).astype(np.float32)).reshape(-1, 1, 8, 8)
    x = (x - 0.3) / 0.4
    y = torch.from_numpy(target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(y)))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    if train_subset is not None:
        train = train[:train_subset]
    return Digits(x[train].contiguous(), y[train].contiguous(), x[test].contiguous(),
                  y[test].contiguous())


class BatchIndexDataset(Dataset):
    """Each item is a whole batch (a list of indices in, tensors out): no per-sample collate."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # sample by sample, as a decoding pipeline would: worker timings then vary
        return torch.stack([self.x[i] for i in idx]), torch.stack([self.y[i] for i in idx])


def augment(x: torch.Tensor, gen: torch.Generator, max_shift: int, noise_std: float
            ) -> torch.Tensor:
    """Random integer translation (zero fill) plus Gaussian noise, drawn from ``gen``."""
    b, _, h, w = x.shape
    out = x
    if max_shift:
        s = max_shift
        shifts = torch.randint(-s, s + 1, (2, b), generator=gen)
        padded = F.pad(x, (s, s, s, s))
        rows = torch.arange(h)[None, :] + s + shifts[0][:, None]
        cols = torch.arange(w)[None, :] + s + shifts[1][:, None]
        bi = torch.arange(b)[:, None, None]
        out = padded[bi, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)
    if noise_std:
        out = out + noise_std * torch.randn(out.shape, generator=gen)
    return out
