"""Compose a RunConfig from the packaged YAML presets and ``key=value`` overrides.

The CLI and the library both go through Hydra's composition, so there is one source of
truth for every value, and errors name the key, the bad value and the valid choices.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

from pydantic import ValidationError

from nora.config.schema import RunConfig
from nora.errors import ConfigError

CONFIG_MODULE = "nora.conf"
GROUPS = {"modes": "mode", "regime": "regime", "violation": "violation", "trainer": "trainer"}


def group_choices(group: str) -> list[str]:
    """The preset names of one YAML group, e.g. ``group_choices("regime")``."""
    root = resources.files(CONFIG_MODULE).joinpath(group)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


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


def _check_override_syntax(overrides: Sequence[str]) -> None:
    for ov in overrides:
        if not isinstance(ov, str) or "=" not in ov:
            raise ConfigError(f"override {ov!r} is not of the form key=value "
                              f"(e.g. regime=strict, train.epochs=2)")
        key, value = ov.split("=", 1)
        key = key.lstrip("+~")
        if key in REGISTERED and _register_preset(key, value):
            continue
        if key in GROUPS and value not in group_choices(key):
            raise ConfigError(f"{key}={value!r} is not a known preset; "
                              f"valid choices: {', '.join(group_choices(key))}")


def compose_dict(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The composed (unvalidated) config as plain data."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides)
    _check_override_syntax(overrides)
    gh = GlobalHydra.instance()
    was_initialized = gh.is_initialized()
    if was_initialized:
        gh.clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = compose(config_name="config", overrides=overrides,
                          return_hydra_config=any(o.lstrip("+~").startswith("hydra")
                                                  for o in overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(_hydra_message(str(exc), overrides)) from None
    finally:
        if was_initialized:
            GlobalHydra.instance().clear()
    data = OmegaConf.to_container(cfg, resolve=False)
    data.pop("hydra", None)
    return OmegaConf.to_container(OmegaConf.create(data), resolve=True)


def _hydra_message(msg: str, overrides: Sequence[str]) -> str:
    first = msg.strip().splitlines()[0] if msg.strip() else msg
    missing = re.search(r"Could not find '([^']+)/([^'/]+)'", msg)
    if missing and "Available options" in msg:
        options = [ln.strip() for ln in msg.split("Available options", 1)[1].splitlines()[1:]
                   if ln.strip() and not ln.startswith(("Config search", "\tprovider"))]
        options = [o for o in options if "provider=" not in o and not o.startswith("Config")]
        return (f"{missing.group(1)}={missing.group(2)!r} is not available; valid choices: "
                f"{', '.join(options)}")
    match = re.search(r"override '([^']+)'", msg)
    if not match:
        return f"invalid override in {' '.join(overrides)!r}: {first}"
    key = match.group(1)
    value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key), None)
    groups_only = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in GROUPS]
    parent: Any = compose_dict(groups_only)
    path = key.split(".")
    for part in path[:-1]:
        if not isinstance(parent, Mapping) or part not in parent:
            break
        parent = parent[part]
    known = ", ".join(sorted(parent)) if isinstance(parent, Mapping) else ""
    return f"unknown config key {key!r} (value {value!r}); valid keys here: {known}"


def validate(data: Mapping[str, Any]) -> RunConfig:
    """Validate composed data, turning pydantic's report into one message per bad key."""
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


def _lookup(data: Any, loc: Iterable[Any]) -> Any:
    cur = data
    for part in loc:
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, (list, tuple)) and isinstance(part, int) and part < len(cur):
            cur = cur[part]
        else:
            return None
    return cur


def format_validation_error(exc: ValidationError, data: Mapping[str, Any]) -> str:
    lines = ["invalid config:"]
    for err in exc.errors():
        loc = [p for p in err["loc"] if p not in ("supervised", "ppo")]
        key = ".".join(str(p) for p in loc)
        value = err.get("input", _lookup(data, loc))
        if err["type"] == "extra_forbidden":
            parent = _lookup(data, loc[:-1])
            known = sorted(set(parent) - {loc[-1]}) if isinstance(parent, Mapping) else []
            lines.append(f"  {key}: unknown key (value {value!r}); valid keys here: "
                         f"{', '.join(known)}")
        else:
            lines.append(f"  {key} = {value!r}: {err['msg']}")
    return "\n".join(lines)


def load_config(overrides: Sequence[str] = ()) -> RunConfig:
    """Compose presets with ``key=value`` overrides (as on the CLI) and validate."""
    return validate(compose_dict(overrides))
