"""Seeding at the edge of a run, and explicit generators derived from one run seed."""
from __future__ import annotations

import os
import random
import zlib

import numpy as np
import torch


def derive_seed(seed: int, *names: object) -> int:
    """A 63-bit child seed for a named stream (``derive_seed(42, "data", epoch)``)."""
    ss = np.random.SeedSequence([seed & (2**63 - 1)] + [zlib.crc32(str(n).encode()) for n in names])
    return int(ss.generate_state(1, dtype=np.uint64)[0] & np.uint64(2**63 - 1))


def torch_generator(seed: int, *names: object, device: str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded for one named stream of the run."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *names))
    return g


def entropy_seed() -> int:
    """A seed nobody chose: what an unseeded run effectively uses."""
    return int.from_bytes(os.urandom(8), "little") & (2**63 - 1)


def set_determinism(deterministic: bool, *, cudnn_benchmark: bool = False) -> None:
    """Switch torch's deterministic-algorithm mode and cuDNN autotuning together."""
    torch.use_deterministic_algorithms(deterministic, warn_only=False)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = cudnn_benchmark
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def apply_threads(n: int) -> None:
    """Pin torch's intra-op thread count: on CPU it decides the bits of reductions."""
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def seed_everything(seed: int, *, deterministic: bool = True) -> dict[str, object]:
    """Seed python, numpy and torch globals on purpose and return what was set, for the record.

    Library code never draws from these globals; they are seeded for third-party code
    (dropout, user callbacks) that does.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    _seed_torch(seed)
    set_determinism(deterministic)
    return {"seed": seed, "deterministic": deterministic,
            "python_hash_seed": os.environ.get("PYTHONHASHSEED")}


def _seed_torch(seed: int) -> None:
    """``torch.manual_seed``; on a machine without an accelerator only the CPU generator,
    which is all there is to seed: there ``torch.manual_seed`` queues a CUDA seeding for
    later with a formatted stack trace, 1-2 ms a call inside a pytest case."""
    xpu = getattr(torch, "xpu", None)
    if (torch.cuda.is_available() or torch.backends.mps.is_available()
            or (xpu is not None and xpu.is_available())):
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)
