"""Compose a config without Hydra, from presets read once per process.

Hydra's composition costs 50-300 ms per call (it rebuilds the defaults tree, searches the
config path and re-reads every YAML file), which was more than half of NORA's own cost per
case in a matrix of small test cases. The presets here (``nora/conf``) are a plain defaults
list of one option per group, so composing one is a deep merge of the base config and the
chosen option of each group, and a ``key=value`` override is a replacement of one leaf.
``fast_compose`` does exactly that on dicts cached once per process, and returns ``None``
for anything outside that simple shape (``+``/``~``/``++`` overrides, ``hydra`` keys,
unknown keys, interpolations, sweeps, lists, packages): the caller then composes with Hydra,
which stays the reference. ``tests/test_config_fastpath.py`` compares both on many override
lists, and the cache checks itself against Hydra's defaults when it is built.
"""
from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

CONFIG_MODULE = "nora.conf"
PRIMARY = "config"
_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)\s*$")
_SCALARS = (str, int, float, bool, type(None))


def _read_yaml(path: Any) -> tuple[dict[str, Any], str | None]:
    """A preset's content (plain data) and its ``# @package`` header, if any."""
    from omegaconf import OmegaConf

    text = path.read_text()
    package = None
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        match = _PACKAGE.match(line)
        if match:
            package = match.group(1)
    data = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a preset must be a mapping")
    return data, package


def _place(data: dict[str, Any], package: str | None, group: str) -> dict[str, Any]:
    """Put a group option's content where Hydra puts it: under its package."""
    if package == "_global_":
        return data
    path = group if package in (None, "_group_") else package
    for part in reversed(path.split(".")):
        data = {part: data}
    return data


def merge(base: dict[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """OmegaConf's merge on plain data: mappings merge key by key, anything else replaces."""
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _has_interpolation(data: Any) -> bool:
    if isinstance(data, dict):
        return any(_has_interpolation(v) for v in data.values())
    if isinstance(data, list):
        return any(_has_interpolation(v) for v in data)
    return isinstance(data, str) and ("${" in data or data == "???")


class Presets:
    """The base config, the defaults list and every group option, read once."""

    def __init__(self) -> None:
        root = resources.files(CONFIG_MODULE)
        primary, _ = _read_yaml(root.joinpath(f"{PRIMARY}.yaml"))
        defaults = primary.pop("defaults", [])
        primary.pop("hydra", None)
        self.base = primary
        self.order: list[str | None] = []          # None: the primary config (_self_)
        self.default_choice: dict[str, str] = {}
        for entry in defaults:
            if entry == "_self_":
                self.order.append(None)
            elif (isinstance(entry, dict) and len(entry) == 1
                  and re.fullmatch(r"[A-Za-z_]\w*", next(iter(entry)))
                  and isinstance(next(iter(entry.values())), str)):
                group, choice = next(iter(entry.items()))
                self.order.append(group)
                self.default_choice[group] = choice
            else:
                raise ValueError(f"defaults entry {entry!r} is beyond the fast path")
        if None not in self.order:
            self.order.insert(0, None)
        self.options: dict[str, dict[str, dict[str, Any]]] = {}
        for group in self.default_choice:
            self.options[group] = {}
            for path in root.joinpath(group).iterdir():
                if path.name.endswith(".yaml"):
                    data, package = _read_yaml(path)
                    if "defaults" in data:
                        raise ValueError(f"{group}/{path.name} has its own defaults list")
                    self.options[group][path.name[:-5]] = _place(data, package, group)
        if _has_interpolation([self.base, self.options]):
            raise ValueError("interpolations in the presets are beyond the fast path")

    def compose(self, choices: Mapping[str, str]) -> dict[str, Any]:
        """Base and the chosen option of each group, merged in defaults-list order."""
        out: dict[str, Any] = {}
        for group in self.order:
            merge(out, self.base if group is None else self.options[group][choices[group]])
        return out


@functools.lru_cache(maxsize=1)
def presets() -> Presets | None:
    """The cache, or None when the presets use something the fast path does not copy
    (then every composition goes through Hydra)."""
    try:
        return Presets()
    except (ValueError, OSError, TypeError, KeyError):
        return None


# ``key.path=<decimal integer>``: Hydra's grammar reads these as that int; a matrix gives
# every case its own seed, and Hydra's parser takes about 1 ms per new string
_PLAIN_INT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)=(-?(?:0|[1-9][0-9]*))")


@functools.lru_cache(maxsize=4096)
def _parse(override: str) -> tuple[str, Any] | None:
    """``(key, value)`` of a plain ``key=value`` override, parsed by Hydra's own grammar
    (once per distinct string), or None when it is anything else."""
    plain = _PLAIN_INT.fullmatch(override)
    if plain is not None and not plain.group(1).startswith("hydra"):
        return plain.group(1), int(plain.group(2))
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType, ValueType

    try:
        (ov,) = OverridesParser.create().parse_overrides([override])
        value = ov.value()
    except Exception:                 # noqa: BLE001 - Hydra's path reports the error
        return None
    key = ov.key_or_group
    if (ov.type != OverrideType.CHANGE or ov.package is not None
            or ov.value_type != ValueType.ELEMENT or type(value) not in _SCALARS
            or not key or key.startswith("hydra") or "/" in key
            or (isinstance(value, str) and ("$" in value or "\\" in value or value == "???"))):
        return None
    return key, value


def fast_compose(overrides: Sequence[str]) -> dict[str, Any] | None:
    """The composed config as Hydra would give it, or None when the overrides need Hydra."""
    cache = presets()
    if cache is None:
        return None
    parsed = [_parse(o) for o in overrides]
    if any(p is None for p in parsed):
        return None
    keys = [k for k, _ in parsed]           # type: ignore[misc]
    if len(set(keys)) != len(keys):
        return None
    choices = dict(cache.default_choice)
    leaves = []
    for key, value in parsed:               # type: ignore[misc]
        if key in choices:
            if not isinstance(value, str) or value not in cache.options[key]:
                return None
            choices[key] = value
        else:
            leaves.append((key, value))
    data = cache.compose(choices)
    for key, value in leaves:
        *parents, leaf = key.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node or isinstance(node[leaf], (dict, list)):
            return None
        node[leaf] = value
    return data
