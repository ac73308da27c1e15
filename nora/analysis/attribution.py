"""Why two runs part ways at their first divergent step, read from what each step recorded:
the batch it trained on, the RNG states it drew from, each param group's LR. The inputs
decide the cause, not a guess from the manifests."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Attribution:
    kind: str      # data | randomness | hyperparameters | kernels
    message: str
    hint: str


def attribute(step: int, a: dict[str, Any] | None, b: dict[str, Any] | None,
              threads: tuple[Any, Any] | None = None) -> Attribution | None:
    """The cause of a divergence at ``step`` from the two step records (None when either
    record lacks the input hashes, e.g. one written by an older NORA)."""
    if not a or not b or "batch_hash" not in a or "batch_hash" not in b:
        return None
    if a["batch_hash"] != b["batch_hash"]:
        return Attribution("data", f"step {step} trained on a different batch (data order or "
                           "position differs)",
                           "keep the data order seeded and in order (no unordered DataLoader "
                           "workers), and on resume restore the loader position.")
    if a.get("rng_hash") != b.get("rng_hash"):
        return Attribution("randomness", f"step {step} had the same batch but different RNG "
                           "states (different random draws: dropout, augmentation, sampling)",
                           "seed every generator from the run seed, and save and restore every "
                           "RNG state in checkpoints.")
    if a.get("lrs") != b.get("lrs"):
        groups = [i for i, (x, y) in enumerate(zip(a.get("lrs") or [], b.get("lrs") or []))
                  if x != y]
        return Attribution("hyperparameters", f"step {step} had the same batch and RNG states "
                           f"but a different learning rate (param group(s) {groups}: "
                           f"{a.get('lrs')} vs {b.get('lrs')})",
                           "record every mid-run hyperparameter change as a tracked config "
                           "change, so a replay applies it.")
    why = "nondeterministic kernels or a different thread count"
    if threads is not None:
        why = f"a different thread count ({threads[0]} vs {threads[1]})"
    return Attribution("kernels", f"step {step} had the same batch, RNG states and learning "
                       f"rates, yet a different result: {why}",
                       "turn deterministic algorithms on, cudnn.benchmark off, and run with "
                       "the recorded thread count.")
