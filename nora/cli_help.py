"""What ``nora train`` tells a user about configs without training: every config group's
choices (``--help``) and the composed config of each job (``--cfg job``).

Choices come from one function, :func:`choices`, which reads the preset folders of
``nora/conf`` and Hydra's own groups (launchers, sweepers), so a new preset file shows up
in ``--help`` without touching this module.
"""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from importlib import resources

from nora.config.compose import CONFIG_MODULE, group_choices

HYDRA_GROUPS = ("hydra/launcher", "hydra/sweeper")
EXTRAS = {"submitit_local": "slurm", "submitit_slurm": "slurm"}


def _conf_groups() -> list[str]:
    root = resources.files(CONFIG_MODULE)
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(("_", "."))
                  and any(f.name.endswith(".yaml") for f in p.iterdir()))


def _hydra_choices(group: str) -> list[str]:
    """Options Hydra can find for one of its own groups (plugins installed here)."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    gh = GlobalHydra.instance()
    if gh.is_initialized():
        return sorted(gh.config_loader().get_group_options(group))
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
        return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def defaults() -> dict[str, str]:
    """The preset each group starts from (the ``defaults`` list of config.yaml)."""
    from omegaconf import OmegaConf

    text = resources.files(CONFIG_MODULE).joinpath("config.yaml").read_text()
    out: dict[str, str] = {}
    for item in OmegaConf.create(text).get("defaults", []):
        if not isinstance(item, str):
            for key, value in dict(item).items():
                out[str(key)] = str(value)
    return out


def choices() -> dict[str, list[str]]:
    """Every config group a ``train`` override can pick from, with its choices."""
    from nora.registry import names

    out = {g: group_choices(g) for g in _conf_groups()}
    for group in ("trainer", "violation"):  # registered ones too, YAML preset or not
        out[group] = sorted(set(out.get(group, [])) | set(names(group)))
    for group in HYDRA_GROUPS:
        out[group] = _hydra_choices(group)
    return out


def train_epilog() -> str:
    """The ``nora train --help`` text after the options: groups, choices, examples."""
    marks = defaults()
    marks.setdefault("hydra/launcher", "basic")
    marks.setdefault("hydra/sweeper", "basic")
    groups = choices()
    width = max(map(len, groups)) + 2
    lines = ["config groups (GROUP=CHOICE; * marks the default):"]
    for group, names in groups.items():
        shown = ", ".join(n + ("*" if n == marks.get(group) else "") for n in names)
        lines.append(textwrap.fill(shown, 92, initial_indent=f"  {group:<{width}}",
                                   subsequent_indent=" " * (width + 2)))
    missing = sorted({extra for name, extra in EXTRAS.items()
                      if name not in groups.get("hydra/launcher", [])})
    for extra in missing:
        lines.append(f"  (more launchers with: pip install 'nora[{extra}]')")
    lines += ["", "any other value: KEY=VALUE on a key of the composed config (see it with "
              "--cfg job), e.g. train.epochs=10 seed=null device=cpu",
              "", "examples:",
              "  python -m nora train regime=strict violation=missing_seed",
              "  python -m nora train --multirun regime=balanced,strict seed=1,2",
              "  python -m nora train trainer=ppo train.epochs=3 --cfg job"]
    return "\n".join(lines)


def composed_yaml(jobs: Sequence[Sequence[str]]) -> str:
    """The validated config of each job, as YAML (what the run would use, defaults filled)."""
    from omegaconf import OmegaConf

    from nora.config.compose import load_config

    parts = []
    for i, job in enumerate(jobs):
        config = load_config(list(job))
        text = OmegaConf.to_yaml(OmegaConf.create(config.model_dump(mode="json")))
        if len(jobs) > 1:
            text = f"# job {i}: {' '.join(job) or '(defaults)'}\n{text}"
        parts.append(text)
    return "\n".join(parts)
