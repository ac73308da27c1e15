"""The violation registry: name -> an instance implementing ``Violation``."""
from __future__ import annotations

from nora.errors import ConfigError
from nora.violations.amp_nan import AmpNan
from nora.violations.aug_leak import AugLeak
from nora.violations.base import BaseViolation, Fix, Violation
from nora.violations.checkpoint_incomplete import CheckpointIncomplete
from nora.violations.eval_mode_bug import EvalModeBug
from nora.violations.missing_seed import MissingSeed
from nora.violations.nondeterminism_enabled import NondeterminismEnabled
from nora.violations.none import NoViolation
from nora.violations.untracked_config_change import UntrackedConfigChange

VIOLATIONS: dict[str, Violation] = {
    v.name: v for v in (NoViolation(), MissingSeed(), NondeterminismEnabled(),
                        UntrackedConfigChange(), AmpNan(), EvalModeBug(), AugLeak(),
                        CheckpointIncomplete())
}
RUNTIME = frozenset(n for n, v in VIOLATIONS.items() if v.scope == "runtime")


def get_violation(name: str) -> Violation:
    try:
        return VIOLATIONS[name]
    except KeyError:
        raise ConfigError(f"violation {name!r} is unknown; valid choices: "
                          f"{', '.join(VIOLATIONS)}") from None


__all__ = ["VIOLATIONS", "RUNTIME", "BaseViolation", "Fix", "Violation", "get_violation"]
