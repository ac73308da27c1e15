"""One-line error messages for bad overrides and invalid configs.

Hydra, OmegaConf and pydantic report a bad value in their own words, over several lines,
sometimes without the value (an ``AssertionError`` for ``+=cpu``, an ``OSError`` for a
5,000-character preset name). These helpers turn each into one line that names the key,
the bad value (shortened) and, where there are any, the valid choices.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

MAX_SHOWN = 60


def short(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, so a huge bad value stays one line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 13]}...({len(text)} chars)"


def one_line(text: str) -> str:
    """Whitespace collapsed, control characters escaped: safe to print as one line."""
    text = " ".join(text.split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
    """``invalid config: key = value: reason; ...`` for every bad key, on one line."""
    parts = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if p not in ("supervised", "ppo")]
        key = ".".join(str(p) for p in loc) or "<config>"
        value = err.get("input", _lookup(data, loc))
        if err["type"] == "extra_forbidden":
            parent = _lookup(data, loc[:-1])
            known = sorted(set(parent) - {loc[-1]}) if isinstance(parent, Mapping) else []
            parts.append(f"{key}: unknown key (value {short(value)}); valid keys here: "
                         f"{', '.join(map(str, known))}")
        else:
            parts.append(f"{key} = {short(value)}: {one_line(err['msg'])}")
    return "invalid config: " + "; ".join(parts)


def name_override(message: str, overrides: Sequence[str]) -> str:
    """``message`` plus the override an unknown key came from, when the message names only
    part of its path (``+a.b.c=1`` composes to an unknown key ``a``)."""
    for key in re.findall(r"(?:^invalid config: |; )([^\s:;]+): unknown key", message):
        for ov in overrides:
            path = ov.partition("=")[0].lstrip("+~")
            if path.startswith(key + ".") and short(ov) not in message:
                return f"{message} (from override {short(ov)})"
    return message


def _culprit(exc: Exception, overrides: Sequence[str]) -> str | None:
    """The override an exception is about, when its message or type says which."""
    text = str(exc)
    keys = [ov.partition("=")[0].lstrip("+~") for ov in overrides]
    tests = (lambda ov, key: ov in text,
             lambda ov, key: bool(key) and re.search(rf"full_key: {re.escape(key)}$", text, re.M),
             lambda ov, key: bool(key) and f"'{key}'" in text,
             lambda ov, key: len(ov.partition("=")[2]) >= 3 and ov.partition("=")[2] in text)
    for test in tests:
        for ov, key in zip(overrides, keys):
            if test(ov, key):
                return ov
    return overrides[0] if len(overrides) == 1 else None


def hydra_message(exc: Exception, overrides: Sequence[str],
                  known_keys: Callable[[str, Sequence[str]], list[str]]) -> str:
    """One line for an exception out of Hydra's composition of ``overrides``."""
    msg = str(exc)
    first = one_line(msg.strip().splitlines()[0]) if msg.strip() else type(exc).__name__
    missing = re.search(r"Could not find '([^']+)/([^'/]+)'", msg)
    if missing and "Available options" in msg:
        options = [ln.strip() for ln in msg.split("Available options", 1)[1].splitlines()[1:]]
        options = [o for o in options if o and "provider=" not in o
                   and not o.startswith(("Config", "\t"))]
        return (f"{missing.group(1)}={short(missing.group(2))} is not available; valid "
                f"choices: {', '.join(options)}")
    unknown = re.search(r"Could not override '([^']+)'", msg)
    if unknown and "Key '" in f"{msg} {exc.__cause__}":
        key = unknown.group(1)
        value = next((o.split("=", 1)[1] for o in overrides
                      if o.split("=", 1)[0].lstrip("+~") == key), None)
        return (f"unknown config key {key!r} (value {short(value)}); valid keys here: "
                f"{', '.join(known_keys(key, overrides))}")
    culprit = _culprit(exc, overrides)
    where = (f"override {short(culprit)}" if culprit is not None
             else f"overrides {short(' '.join(overrides))}")
    if "Interpolation" in type(exc).__name__ or "interpolation" in msg:
        return (f"{where}: {first} (interpolations ${{...}} in overrides may only name "
                f"keys of the config, e.g. train.lr=${{train.weight_decay}})")
    if isinstance(exc, OSError):
        return f"{where}: not a usable preset or path ({type(exc).__name__}: {short(first)})"
    return f"{where} is invalid: {first}"
