"""Compose a RunConfig from the packaged YAML presets and ``key=value`` overrides.

The CLI and the library share one composition: Hydra's semantics, computed by
``nora.config.presets`` on presets cached once per process when the overrides are plain
(the common case, microseconds), and by Hydra itself otherwise. Any bad input ends as one
``ConfigError`` line that names the key, the bad value and the valid choices.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from pydantic import ValidationError

from nora.config.messages import format_validation_error, hydra_message, name_override, short
from nora.config.schema import RunConfig
from nora.errors import ConfigError

CONFIG_MODULE = "nora.conf"
GROUPS = {"modes": "mode", "regime": "regime", "violation": "violation", "trainer": "trainer"}
ALIASES = {"mode": "modes"}          # `mode=norm_aware` reads naturally; the group is `modes`
_RUN_DIRS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir")
MAX_OVERRIDE = 1000                  # characters; longer ones are refused before Hydra sees them


@functools.lru_cache(maxsize=None)
def _choices(group: str) -> tuple[str, ...]:
    root = resources.files(CONFIG_MODULE).joinpath(group)
    return tuple(sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml")))


def group_choices(group: str) -> list[str]:
    """The preset names of one YAML group, e.g. ``group_choices("regime")``."""
    return list(_choices(group))


REGISTERED = ("trainer", "violation")


def _register_preset(group: str, name: str) -> bool:
    """A registered trainer or violation without a YAML preset (a user's, by entry point or
    dotted path) gets one in Hydra's ConfigStore: its own schema's defaults fill the rest,
    and a trainer starts from the supervised preset's ``train`` values."""
    from nora.registry import is_dotted, names

    if name in group_choices(group) or not (is_dotted(name) or name in names(group)):
        return False
    import yaml
    from hydra.core.config_store import ConfigStore

    preset = "supervised" if group == "trainer" else "none"
    text = resources.files(CONFIG_MODULE).joinpath(group, f"{preset}.yaml").read_text()
    base = yaml.safe_load(text)
    if group == "trainer":
        from pydantic_core import PydanticUndefined

        from nora.registry import load

        fields = load("trainer", name).Config.model_fields
        defaults = {k: f.default for k, f in fields.items()
                    if k != "name" and f.default is not PydanticUndefined}
        node = {"trainer": {"name": name, **defaults}, "train": base["train"]}
    else:
        node = {**base, "name": name}
    ConfigStore.instance().store(group=group, name=name, node=node,
                                 package="_global_" if group == "trainer" else None)
    return True


def normalize_overrides(overrides: Sequence[str]) -> list[str]:
    """Overrides as Hydra reads them: ``mode=<name>`` becomes ``modes=<name>``.

    The CLI calls this too, so ``python -m nora train mode=norm_aware`` works like
    ``nora.load_config(["mode=norm_aware"])``. A non-string entry raises ConfigError.
    """
    out = []
    for ov in overrides:
        if not isinstance(ov, str):
            raise ConfigError(f"override {short(ov)} is not a string of the form key=value "
                              "(e.g. regime=strict, train.epochs=2)")
        key, sep, value = ov.partition("=")
        out.append(f"{ALIASES[key]}={value}" if sep and key in ALIASES else ov)
    return out


def _check_override_syntax(overrides: Sequence[str], presets: bool = True) -> None:
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {short(ov)} is not of the form key=value "
                              f"(e.g. regime=strict, train.epochs=2)")
        if len(ov) > MAX_OVERRIDE:
            raise ConfigError(f"override {short(ov)} is {len(ov)} characters long; the "
                              f"limit is {MAX_OVERRIDE}")
        key, value = ov.split("=", 1)
        key = key.lstrip("+~")
        if not key.strip():
            raise ConfigError(f"override {short(ov)} has an empty key; expected key=value "
                              f"(e.g. regime=strict)")
        if key in REGISTERED and _register_preset(key, value):
            continue
        if presets and key in GROUPS and value not in _choices(key):
            raise ConfigError(f"{key}={short(value)} is not a known preset; "
                              f"valid choices: {', '.join(_choices(key))}")
        if key in _RUN_DIRS and not value.strip().strip("'\""):
            raise ConfigError(f"{key}={short(value)}: the run directory must not be empty "
                              f"(records would land in the working directory); give a path, "
                              f"e.g. {key}=runs/my_run")


def check_overrides(overrides: Sequence[str], *, presets: bool = True) -> list[str]:
    """Normalized overrides, or ConfigError for one that is malformed before any composition
    (no ``=``, an empty key, a huge value, an unknown preset, an empty run directory).

    The CLI calls this with ``presets=False`` on everything it hands to Hydra, ``hydra.*``
    keys and sweeps (``regime=strict,balanced``) included; each job's presets are checked
    when it is composed.
    """
    overrides = normalize_overrides(overrides)
    _check_override_syntax(overrides, presets)
    return overrides


def compose_dict(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The composed (unvalidated) config as plain data."""
    overrides = check_overrides(overrides)
    from nora.config.presets import fast_compose

    data = fast_compose(overrides) if _fast_path_ok() else None
    return data if data is not None else compose_dict_hydra(overrides)


@functools.lru_cache(maxsize=1)
def _fast_path_ok() -> bool:
    """Once per process: the cached presets give exactly Hydra's defaults, else Hydra only."""
    from nora.config.presets import fast_compose

    try:
        return fast_compose([]) == compose_dict_hydra([])
    except ConfigError:
        return False


def compose_dict_hydra(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Hydra's own composition (the reference the fast path is tested against)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    overrides = list(overrides)
    gh = GlobalHydra.instance()
    was_initialized = gh.is_initialized()
    if was_initialized:
        gh.clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = compose(config_name="config", overrides=overrides,
                          return_hydra_config=any(o.lstrip("+~").startswith("hydra")
                                                  for o in overrides))
        data = OmegaConf.to_container(cfg, resolve=False)
        data.pop("hydra", None)
        return OmegaConf.to_container(OmegaConf.create(data), resolve=True)
    except Exception as exc:       # noqa: BLE001 - Hydra, OmegaConf and the OS raise anything
        raise ConfigError(hydra_message(exc, overrides, _known_keys)) from None
    finally:
        if was_initialized or GlobalHydra.instance().is_initialized():
            GlobalHydra.instance().clear()


def _known_keys(key: str, overrides: Sequence[str]) -> list[str]:
    """The keys next to ``key`` in the config the group overrides compose."""
    groups_only = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in GROUPS]
    parent: Any = compose_dict(groups_only)
    for part in key.split(".")[:-1]:
        if not isinstance(parent, Mapping) or part not in parent:
            break
        parent = parent[part]
    return sorted(parent) if isinstance(parent, Mapping) else []


def _validate(data: Mapping[str, Any]) -> RunConfig:
    """The one place composed data becomes a RunConfig (schema plus cross-field rules)."""
    try:
        config = RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, data)) from None
    from nora.violations import applicable as applicable_to

    applicable = applicable_to(config.trainer.name)
    if config.trainer.name == "ppo" and config.ddp.world_size > 1:
        raise ConfigError(f"ddp.world_size={config.ddp.world_size} with trainer='ppo': DDP "
                          "runs the supervised trainer only; valid choices for ppo: 1")
    if config.violation.name not in applicable:
        raise ConfigError(f"violation={config.violation.name!r} does not apply to "
                          f"trainer={config.trainer.name!r}; valid choices for it: "
                          f"{', '.join(applicable)}")
    return config


def validate(data: Mapping[str, Any]) -> RunConfig:
    """Validate composed data (e.g. a manifest's config), one message per bad key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, got {short(data)}")
    return _validate(data)


def load_config(overrides: Sequence[str] = ()) -> RunConfig:
    """Compose presets with ``key=value`` overrides (as on the CLI) and validate."""
    if isinstance(overrides, (str, bytes)):
        raise ConfigError(f"overrides must be a list of key=value strings, got the single "
                          f"string {short(overrides)}; write [{short(overrides)}]")
    data = compose_dict(overrides)
    try:
        return validate(data)
    except ConfigError as exc:
        raise ConfigError(name_override(str(exc), overrides)) from None
