"""Per-test seeds, the pytest-randomly convention: a case that fixes no seed of its own trains
with ``base + crc32(node id)``, so each test has its own seed, stable across sessions and
independent of test order, selection and xdist worker. The base is the config's seed
(``seed=`` in the ini ``nora_overrides``, else the preset's default); the controller
decides it and hands it to xdist workers, as pytest-randomly does with its own."""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import pytest

from nora.pytest.options import config_defaults

SEED_BASE = "nora_seed_base"   # workerinput key
_BASE_KEY = pytest.StashKey[object]()
_UNSET = object()


def per_test_seed(base: int, nodeid: str) -> int:
    """``base + crc32(nodeid)``: what pytest-randomly seeds a test with."""
    return base + zlib.crc32(nodeid.encode())


def _config_seed(overrides: Sequence[str]) -> int | None:
    for ov in reversed(list(overrides)):
        key, _, value = ov.partition("=")
        if key.lstrip("+~") == "seed":
            value = value.strip()
            if value.lower() in ("null", "none", "~", ""):
                return None
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"ini nora_overrides: seed={value!r} is not an integer or "
                                 "null") from None
    seed = config_defaults()["seed"]
    return None if seed is None else int(seed)


def seed_base(config: pytest.Config, overrides: Sequence[str]) -> int | None:
    """The session's base seed (None when the config runs unseeded): from the controller on
    an xdist worker, else from the config, worked out once per session."""
    cached = config.stash.get(_BASE_KEY, _UNSET)
    if cached is not _UNSET:
        return cached  # type: ignore[return-value]
    winput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if winput is not None and SEED_BASE in winput:
        base = winput[SEED_BASE]
    else:
        base = _config_seed(overrides)
    config.stash[_BASE_KEY] = base
    return base


def seed_text(nodeid: str, seed: int) -> str:
    """The failure report's line: where the seed came from, and how to rerun with it."""
    crc = zlib.crc32(nodeid.encode())
    return (f"per-test seed {seed} = base {seed - crc} + crc32({nodeid!r}) {crc}; rerun this "
            f"case alone with: pytest '{nodeid}' --nora-seeds={seed}")
