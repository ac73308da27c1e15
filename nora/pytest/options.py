"""The ``--nora-*`` options, validated once: bad values stop the session with a message that
names the value and the choices, before anything runs."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nora.config.compose import group_choices

# fixture name -> (config group, option, what one value is called)
AXES = {"mode": ("modes", "--nora-modes", "mode"),
        "regime": ("regime", "--nora-regimes", "regime"),
        "violation": ("violation", "--nora-violations", "violation")}
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("nora", "NORA reproducibility experiments")
    for _fixture, (_grp, flag, noun) in AXES.items():
        group.addoption(flag, action="append", default=None, metavar="A,B",
                        help=f"{noun}s the `{_fixture}` fixture is parametrized over "
                             "(comma list; default: all)")
    group.addoption("--nora-seeds", default=None, metavar="N,M",
                    help="seeds of each case without seeds=[...] in its nora marker "
                         "(default: the config's seed)")
    group.addoption("--nora-device", default="auto", metavar="DEV",
                    help="auto (a GPU per xdist worker, else CPU), cpu, cuda or cuda:N")
    group.addoption("--nora-report-dir", default="reports", metavar="DIR",
                    help="where session reports go, relative to the rootdir (default: reports)")
    group.addoption("--nora-gate", action="store_true", default=False,
                    help="fail the session when an outcome is not as expected, an in-scope "
                         "violation goes undetected, a clean case has a false positive or a "
                         "verdict fails")
    group.addoption("--nora-update-golden", action="store_true", default=False,
                    help="rewrite golden files instead of comparing against them")
    group.addoption("--nora-mlflow", action="store_true", default=False,
                    help="log each case's run to MLflow ($MLFLOW_TRACKING_URI, default "
                         "sqlite:///mlflow.db; experiment $MLFLOW_EXPERIMENT_NAME or nora)")
    parser.addini("nora_overrides", type="args", default=[],
                  help="config overrides (key=value) applied to every NORA case")
    parser.addini("nora_golden_dir", default="golden",
                  help="where golden baselines live, relative to the rootdir (default: golden)")


@functools.lru_cache(maxsize=1)
def config_defaults() -> dict[str, Any]:
    """The preset each group falls back to and the seed (``nora/conf/config.yaml``), for
    cases that fix no mode, regime or violation (they are still marked with what they run)
    and the base of per-test seeds."""
    from nora.config.compose import compose_dict

    data = compose_dict([])
    return {"mode": data["mode"]["name"], "regime": data["regime"]["name"],
            "violation": data["violation"]["name"], "trainer": data["trainer"]["name"],
            "seed": data.get("seed")}


def _choices(group: str) -> list[str]:
    return group_choices(group)


def parse_names(values: list[str] | None, flag: str, group: str, noun: str) -> tuple[str, ...]:
    """``a,b`` (repeatable) -> validated names; None or ``all`` -> every choice."""
    choices = _choices(group)
    names = [n.strip() for v in (values or []) for n in v.split(",") if n.strip()]
    if not names or names == ["all"]:
        return tuple(choices)
    for name in names:
        if name not in choices:
            raise pytest.UsageError(f"{flag}: {name!r} is not a known {noun}; "
                                    f"choices: {', '.join(choices)} (or all)")
    return tuple(dict.fromkeys(names))


def parse_seeds(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    seeds = []
    for part in (p.strip() for p in value.split(",")):
        if not part.isdigit():
            raise pytest.UsageError(f"--nora-seeds: {part!r} is not a non-negative integer "
                                    f"seed; expected a comma list such as 0,1,2")
        seeds.append(int(part))
    return tuple(dict.fromkeys(seeds))


@dataclass(frozen=True)
class NoraOptions:
    """Everything the command line and ini file decide; the only reader of ``--nora-*``."""

    modes: tuple[str, ...]
    regimes: tuple[str, ...]
    violations: tuple[str, ...]
    seeds: tuple[int, ...] | None
    device: str
    report_root: Path
    gate: bool
    update_golden: bool
    overrides: tuple[str, ...]
    golden_dir: Path = Path("golden")

    def choices(self, axis: str) -> tuple[str, ...]:
        return {"mode": self.modes, "regime": self.regimes, "violation": self.violations}[axis]

    @classmethod
    def from_config(cls, config: pytest.Config) -> NoraOptions:
        opt = config.getoption
        names = {axis: parse_names(opt(flag.lstrip("-").replace("-", "_")), flag, grp, noun)
                 for axis, (grp, flag, noun) in AXES.items()}
        device = opt("nora_device")
        if not _DEVICE.match(device):
            raise pytest.UsageError(f"--nora-device: {device!r} is not a device; choices: "
                                    "auto, cpu, cuda, cuda:N")
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise pytest.UsageError(f"--nora-device: {device!r} but no CUDA device is "
                                        "available here; use auto or cpu")
        root = Path(opt("nora_report_dir"))
        if not root.is_absolute():
            root = config.rootpath / root
        overrides = tuple(config.getini("nora_overrides"))
        for ov in overrides:
            if "=" not in ov:
                raise pytest.UsageError(f"ini nora_overrides: {ov!r} is not of the form "
                                        "key=value")
        return cls(modes=names["mode"], regimes=names["regime"],
                   violations=names["violation"], seeds=parse_seeds(opt("nora_seeds")),
                   device=device, report_root=root, gate=bool(opt("nora_gate")),
                   update_golden=bool(opt("nora_update_golden")), overrides=overrides,
                   golden_dir=config.rootpath / config.getini("nora_golden_dir"))
