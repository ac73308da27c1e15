"""Trainers and violations by name: entry points (groups ``nora.trainers`` and
``nora.violations``, the built-ins included) or a dotted path ``package.module:Class``.

Names come from entry-point metadata without importing anything, so the pytest plugin and
the CLI can list choices without paying for torch; a class is imported on first use.
"""
from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from nora.errors import ConfigError

GROUPS = {"trainer": "nora.trainers", "violation": "nora.violations"}


@cache
def _entry_points(kind: str) -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group=GROUPS[kind])}
    return dict(sorted(found.items()))


def names(kind: str) -> list[str]:
    """Registered names of one kind (``"trainer"`` or ``"violation"``)."""
    return list(_entry_points(kind))


def is_dotted(name: str) -> bool:
    return ":" in name


@cache
def load(kind: str, name: str) -> Any:
    """The class registered under ``name`` (or at the dotted path ``module:Class``)."""
    target = name if is_dotted(name) else _entry_points(kind).get(name)
    if target is None:
        raise ConfigError(f"{kind} {name!r} is unknown; valid choices: "
                          f"{', '.join(names(kind))}, or a dotted path package.module:Class")
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{kind} {name!r} points at {target!r}, which cannot be loaded: "
                          f"{exc}") from None
    return obj


def clear() -> None:
    """Forget cached lookups (after installing a package in the same process)."""
    _entry_points.cache_clear()
    load.cache_clear()
