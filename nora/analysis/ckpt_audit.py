"""What a checkpoint holds, read from its contents: the parts a bit-identical resume needs.

A resume equals the uninterrupted run only if the checkpoint carries the model, the
optimizer's state (moments, step counts), the scheduler's position, every RNG state
(torch, numpy, python) and the data loader's position. Frameworks name these parts
differently (Lightning: ``optimizer_states``, ``lr_schedulers``, ``loops``; a plain loop:
whatever keys the user chose), so the audit looks at shapes, not names alone: an optimizer
state is a mapping with ``param_groups`` and ``state``, a scheduler one has ``last_epoch``.
"""
from __future__ import annotations

import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["PARTS", "audit_file", "audit_state", "describe"]

PARTS = ("optimizer", "scheduler", "rng", "position")
_RNG_KINDS = ("torch", "numpy", "python")
_POSITION_WORDS = ("loader", "sampler", "position", "yielded", "data_state")


def _walk(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, obj
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{path}.{i}" if path else str(i))


def _filled(value: Any) -> bool:
    return value is not None and not (isinstance(value, (Mapping, list, tuple)) and not value)


def audit_state(state: Mapping[str, Any], *,
                expect_scheduler: bool | None = None) -> dict[str, Any]:
    """``{"missing": [part, ...], "rng_missing": [kind, ...], "details": [...]}``.

    ``missing`` lists parts of ``PARTS`` the state lacks; ``scheduler`` only when
    ``expect_scheduler``, which by default is read from the optimizer state: torch's
    schedulers leave ``initial_lr`` in every param group they drive.
    """
    optim, empty_optim, sched, rng_kinds, position = False, False, False, set(), False
    scheduled = False
    for path, value in _walk(state):
        low = path.lower()
        if isinstance(value, Mapping) and "param_groups" in value and "state" in value:
            optim, empty_optim = True, empty_optim or not value["state"]
            scheduled = scheduled or any(isinstance(g, Mapping) and "initial_lr" in g
                                         for g in value["param_groups"])
        if isinstance(value, Mapping) and "last_epoch" in value:
            sched = True
        if "rng" in low or "random_state" in low:
            last = low.rsplit(".", 1)[-1]
            for kind in _RNG_KINDS:
                if kind in last or (kind == "python" and last == "random"):
                    rng_kinds.add(kind)
            if isinstance(value, torch.Tensor) and value.dtype == torch.uint8:
                rng_kinds.add("torch")
        if any(w in low for w in _POSITION_WORDS) and _filled(value):
            position = True
    missing, details = [], []
    if not optim:
        missing.append("optimizer")
        details.append("no optimizer state (moments, step counts)")
    elif empty_optim:
        missing.append("optimizer")
        details.append("an optimizer state with no per-parameter state (moments, `step`)")
    if (scheduled if expect_scheduler is None else expect_scheduler) and not sched:
        missing.append("scheduler")
        details.append("no scheduler position (`last_epoch`)")
    rng_missing = [k for k in _RNG_KINDS if k not in rng_kinds]
    if rng_missing:
        missing.append("rng")
        details.append(f"no RNG state: {', '.join(rng_missing)}")
    if not position:
        missing.append("position")
        details.append("no data-loader position (batch order and batches consumed)")
    return {"missing": missing, "rng_missing": rng_missing, "details": details}


def audit_file(path: str | Path, *, expect_scheduler: bool | None = None) -> dict[str, Any]:
    """Audit a checkpoint file: a torch file, or a stable-baselines3 zip."""
    path = Path(path)
    if zipfile.is_zipfile(path) and not _is_torch_zip(path):
        return _audit_sb3_zip(path)
    note = []
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any refusal is a finding about the file
        note.append(f"does not load with weights_only=True ({str(exc).splitlines()[0][:160]})")
        state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, Mapping):
        state = {"model": state}
    out = audit_state(state, expect_scheduler=expect_scheduler)
    out["details"] = note + out["details"]
    out["file"] = str(path)
    return out


def _is_torch_zip(path: Path) -> bool:
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("data.pkl") for n in zf.namelist())


def _audit_sb3_zip(path: Path) -> dict[str, Any]:
    """An SB3 ``model.save`` zip: policy and optimizer are there; RNG and env state are not."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        nora_state = "nora_state.pth" in names
    missing, details = [], []
    if "policy.optimizer.pth" not in names:
        missing.append("optimizer")
        details.append("no optimizer state")
    if not nora_state:
        missing += ["rng", "position"]
        details += ["no RNG state: torch, numpy, python (SB3's zip keeps none; `load` "
                    "re-seeds from the saved seed)",
                    "no environment state (episode in progress, env RNG, last observation): "
                    "`PPO.load(..., env=env)` resets the env"]
    return {"missing": missing, "rng_missing": [] if nora_state else list(_RNG_KINDS),
            "details": details, "file": str(path)}


def describe(audit: Mapping[str, Any]) -> str:
    """One line: "the checkpoint has no RNG state: torch, numpy, python; no optimizer ..."."""
    if not audit["details"]:
        return "the checkpoint holds every part a resume needs"
    return "the checkpoint has " + "; ".join(audit["details"])
