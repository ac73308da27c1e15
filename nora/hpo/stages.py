"""HPO stage presets (``nora/conf/hpo/<stage>.yaml``): what one stage of a staged search
samples, how long each trial trains, and how a fine stage narrows around an earlier best.

Presets are plain YAML validated by pydantic, like run configs; ``hpo.<key>=value``
overrides change them (``hpo.trials=4 hpo.epochs=1``), and an unknown key or stage is an
error naming the valid choices.
"""
from __future__ import annotations

import math
from importlib import resources
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nora.errors import ConfigError
DEFAULT_METRIC = {"supervised": "accuracy", "ppo": "greedy_return"}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Range(_Frozen):
    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if self.low > self.high or (self.log and self.low <= 0):
            raise ValueError(f"range low={self.low!r} high={self.high!r} is empty"
                             + (" or not positive (log scale)" if self.log else ""))
        return self


class FloatParam(_Range):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False


class IntParam(_Range):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False


class CategoricalParam(_Frozen):
    type: Literal["categorical"]
    choices: tuple[bool | int | float | str, ...] = Field(min_length=1)


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


class HpoStage(_Frozen):
    """One stage. ``space`` maps trainer name -> {config key: distribution}."""

    name: str
    trials: int = Field(ge=0)
    epochs: int = Field(ge=1)
    metric: str
    direction: Literal["maximize", "minimize"]
    sampler: Literal["tpe", "random"]
    sampler_seed: int
    verify_top: int = Field(ge=0)
    narrow_from: str | None
    narrow_factor: float = Field(ge=1.0)
    refit_seeds: tuple[int, ...]
    space: dict[str, dict[str, Param]]

    def metric_for(self, trainer: str) -> str:
        return DEFAULT_METRIC.get(trainer, "accuracy") if self.metric == "auto" else self.metric

    def space_for(self, trainer: str) -> dict[str, Param]:
        if self.trials and trainer not in self.space:
            raise ConfigError(f"hpo={self.name!r} has no search space for trainer={trainer!r}; "
                              f"spaces: {', '.join(sorted(self.space)) or 'none'}")
        return dict(self.space.get(trainer, {}))


def as_override(key: str, value: Any) -> str:
    """``key=value`` in Hydra's grammar (booleans lower case, as YAML writes them)."""
    return f"{key}={str(value).lower() if isinstance(value, bool) else value}"


def stage_choices() -> list[str]:
    root = resources.files("nora.conf").joinpath("hpo")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _coerce(value: str) -> Any:
    import yaml

    return yaml.safe_load(value)


def load_stage(name: str, overrides: list[str] = ()) -> HpoStage:
    """The preset ``name`` with ``hpo.<key>=value`` overrides applied (``key`` may be
    dotted into the space: ``hpo.space.supervised.train.lr.high=0.01``)."""
    import yaml

    if name not in stage_choices():
        raise ConfigError(f"hpo={name!r} is not a known stage; valid choices: "
                          f"{', '.join(stage_choices())}, all")
    data = yaml.safe_load(resources.files("nora.conf").joinpath("hpo", f"{name}.yaml")
                          .read_text())
    for ov in overrides:
        key, value = ov.split("=", 1)
        parts = key.split(".")[1:]
        if parts[:1] == ["space"] and len(parts) >= 4:   # space.<trainer>.<config key>.<field>
            parts = [parts[0], parts[1], ".".join(parts[2:-1]), parts[-1]]
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node
        if not isinstance(node, dict) or not parts:
            raise ConfigError(f"{key}={value!r}: not a key of hpo stage {name!r}")
        node[parts[-1]] = _coerce(value)
    try:
        return HpoStage.model_validate(data)
    except ValidationError as exc:
        errors = [f"hpo.{'.'.join(map(str, e['loc']))} = {e.get('input')!r}: {e['msg']}"
                  for e in exc.errors()]
        raise ConfigError(f"invalid hpo stage {name!r}:\n  " + "\n  ".join(errors)) from None


def narrow(space: dict[str, Param], best: dict[str, Any], factor: float) -> dict[str, Param]:
    """The space around ``best``: log ranges to [best/f, best*f], linear ones to best +-
    range/f, both clipped to the original bounds; categoricals stay as they are."""
    out: dict[str, Param] = {}
    for key, p in space.items():
        if key not in best or isinstance(p, CategoricalParam) or factor == 1.0:
            out[key] = p
            continue
        v = best[key]
        if p.log:
            lo, hi = max(p.low, v / factor), min(p.high, v * factor)
        else:
            half = (p.high - p.low) / factor / 2
            lo, hi = max(p.low, v - half), min(p.high, v + half)
        if isinstance(p, IntParam):
            lo, hi = math.floor(lo), math.ceil(hi)
        out[key] = p.model_copy(update={"low": lo, "high": hi})
    return out
