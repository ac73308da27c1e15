"""The violation registry: names from entry points (group ``nora.violations``), instances
on first use."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache

from nora import registry
from nora.violations.base import BaseViolation, Fix, Violation


@cache
def get_violation(name: str) -> Violation:
    return registry.load("violation", name)()


def names() -> list[str]:
    return registry.names("violation")


def runtime_names() -> frozenset[str]:
    return frozenset(n for n in names() if get_violation(n).scope == "runtime")


def inapplicable(trainer: str) -> frozenset[str]:
    """Violations a trainer declares it cannot have (PPO's policy has no dropout)."""
    return frozenset(getattr(registry.load("trainer", trainer), "inapplicable", ()))


def applicable(trainer: str) -> list[str]:
    skip = inapplicable(trainer)
    return [n for n in names() if n not in skip]


def watched_violations(trainer: str) -> list[Violation]:
    skip = inapplicable(trainer)
    return [get_violation(n) for n in names() if n != "none" and n not in skip]


class _Registry(Mapping[str, Violation]):
    """``nora.VIOLATIONS``: name -> instance, read from the registry when asked."""

    def __getitem__(self, name: str) -> Violation:
        if name not in names():
            raise KeyError(name)
        return get_violation(name)

    def __iter__(self) -> Iterator[str]:
        return iter(names())

    def __len__(self) -> int:
        return len(names())


VIOLATIONS: Mapping[str, Violation] = _Registry()

__all__ = ["VIOLATIONS", "BaseViolation", "Fix", "Violation", "applicable", "get_violation",
           "names", "runtime_names", "watched_violations"]
