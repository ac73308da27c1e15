"""Wall-time cost of NORA's Lightning callback on a clean fit.

The same LightningModule (an MLP with dropout on the digits, batches of 64, Adam, a shuffling loader,
``deterministic=True``, CPU) is fitted with and without ``NoraCallback(regime="balanced")``,
alternating, several repetitions in one process; prints the medians and
``lightning overhead ratio: <x.xx>`` (target <= 1.03). The callback hashes each batch and the
RNG state, writes one JSONL line per step and a parameter hash (raw bytes, never serialised)
every ``--hash-every`` steps. Run by hand:
``.venv/bin/python benchmarks/bench_callbacks.py [--reps 7] [--epochs 5]``.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nora.integrations.lightning import NoraCallback
from nora.trainers.data import _digits_arrays


class MLP(pl.LightningModule):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.2),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def fit(epochs: int, run_dir: str | None, hash_every: int, hidden: int = 1024) -> float:
    x, y = _digits_arrays()
    data = TensorDataset(torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y))
    pl.seed_everything(0, verbose=False)
    model, loader = MLP(hidden), DataLoader(data, batch_size=64, shuffle=True)
    callbacks = [] if run_dir is None else [NoraCallback(run_dir=run_dir,
                                                         hash_every=hash_every)]
    trainer = pl.Trainer(max_epochs=epochs, deterministic=True, accelerator="cpu",
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=callbacks)
    t0 = time.perf_counter()
    trainer.fit(model, loader)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hash-every", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=1024,
                        help="MLP width (1024: about 1.1M parameters; 256 makes Lightning's "
                             "own per-step cost dominate and NORA's share larger)")
    args = parser.parse_args()
    torch.set_num_threads(1)      # both sides alike; a loaded machine's thread pool is noise
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    times: dict[str, list[float]] = {"plain": [], "nora": []}
    with tempfile.TemporaryDirectory() as root:
        fit(1, f"{root}/warm", args.hash_every, args.hidden)   # imports, caches, git call
        for i in range(args.reps):
            order = ("plain", "nora") if i % 2 == 0 else ("nora", "plain")
            for kind in order:
                run_dir = None if kind == "plain" else f"{root}/run{i}"
                times[kind].append(fit(args.epochs, run_dir, args.hash_every, args.hidden))
    for kind, ts in times.items():
        print(f"{kind:>6}: median {statistics.median(ts):.3f}s  "
              f"(min {min(ts):.3f}, max {max(ts):.3f}, n={len(ts)})")
    ratio = statistics.median(times["nora"]) / statistics.median(times["plain"])
    print(f"lightning overhead ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
