"""Staged HPO (sanity -> coarse -> fine -> refit), each stage's summary on disk so a later
stage (or a later invocation) starts from the best *reproducing* config of an earlier one.

Layout: ``<out>/<stage>/trial_NNN/`` (run directories), ``<out>/<stage>/summary.json``,
``<out>/<stage>/best_overrides.txt``; the Optuna studies live in ``<out>/optuna.db``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nora.errors import ConfigError
from nora.hpo.order import STAGE_ORDER
from nora.hpo.stages import HpoStage, as_override, load_stage, narrow
from nora.hpo.study import SearchResult, run_search, train_one
from nora.records import read_json, write_json


@dataclass
class StageOutcome:
    stage: str
    summary: dict[str, Any]
    path: Path

    @property
    def ok(self) -> bool:
        """A search stage crowned a reproducing best; a refit trained every seed."""
        if self.summary.get("kind") == "refit":
            return self.summary["stats"] is not None
        return self.summary.get("best") is not None


def _base(stage: HpoStage, overrides: list[str], study: str) -> list[str]:
    """The stage's epochs (unless given) and, when tracked, one experiment per stage
    (``<study>-hpo-<stage>``, as MLflow users name them) unless one is given."""
    keys = {o.split("=", 1)[0] for o in overrides}
    base = ([] if "train.epochs" in keys else [f"train.epochs={stage.epochs}"]) + overrides
    if "tracking" in keys and "tracking.experiment" not in keys:
        base.append(f"tracking.experiment={study}-hpo-{stage.name}")
    return base


def _previous_best(out: Path, stage: str, before: str | None) -> dict[str, Any] | None:
    """Best params of ``before`` (or the latest earlier stage with a crowned best)."""
    order = list(STAGE_ORDER[:STAGE_ORDER.index(stage)]) if stage in STAGE_ORDER else []
    candidates = [before] if before else list(reversed(order))
    for name in candidates:
        path = out / name / "summary.json"
        if path.is_file():
            best = read_json(path).get("best")
            if best:
                return {"stage": name, **best}
    return None


def run_stage(name: str, hpo_overrides: list[str], overrides: list[str], *, out: Path,
              study: str, storage: str | None = None, echo: Any = print) -> StageOutcome:
    """Run one stage; ``hpo_overrides`` are ``hpo.<key>=v``, ``overrides`` run-config ones."""
    import nora

    stage = load_stage(name, hpo_overrides)
    base = _base(stage, overrides, study)
    from nora.tracking import require

    first = nora.load_config(base)               # bad overrides fail here, upfront
    require(first)                               # and a missing tracker package
    trainer = first.trainer.name
    metric = stage.metric_for(trainer)
    stage_dir = out / stage.name
    stage_dir.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'optuna.db').resolve()}"
    if stage.refit_seeds:
        return _refit(stage, base, metric, out, stage_dir, echo)
    fixed = {o.split("=", 1)[0] for o in overrides}
    space = {k: p for k, p in stage.space_for(trainer).items() if k not in fixed}
    if stage.narrow_from:
        prior = _previous_best(out, stage.name, stage.narrow_from)
        if prior is None:
            raise ConfigError(f"hpo={stage.name!r} narrows around the best of "
                              f"hpo={stage.narrow_from!r}, which has no crowned best in "
                              f"{out}; run that stage first (or set hpo.narrow_from=null)")
        space = narrow(space, prior["params"], stage.narrow_factor)
    result = run_search(stage, base, space, out_dir=stage_dir, storage=storage,
                        study_name=f"{study}-{stage.name}", metric=metric, echo=echo)
    summary = {"kind": "search", **result.to_dict(), "base_overrides": base,
               "space": {k: p.model_dump() for k, p in space.items()}}
    return _write(stage_dir, summary, result)


def _write(stage_dir: Path, summary: dict[str, Any],
           result: SearchResult | None = None) -> StageOutcome:
    write_json(stage_dir / "summary.json", summary)
    best = summary.get("best")
    if best:
        lines = [*summary["base_overrides"],
                 *(as_override(k, v) for k, v in best["params"].items())]
        (stage_dir / "best_overrides.txt").write_text("\n".join(lines) + "\n")
    return StageOutcome(summary["stage"], summary, stage_dir / "summary.json")


def _refit(stage: HpoStage, base: list[str], metric: str, out: Path, stage_dir: Path,
           echo: Any) -> StageOutcome:
    from nora.analysis.stats import seed_stats

    prior = _previous_best(out, stage.name, stage.narrow_from)
    if prior is None:
        raise ConfigError(f"hpo=refit needs a crowned best from an earlier stage "
                          f"({', '.join(STAGE_ORDER[:-1])}) in {out}; run one first")
    params = prior["params"]
    runs = []
    for seed in stage.refit_seeds:
        overrides = [*base, *(as_override(k, v) for k, v in params.items()), f"seed={seed}"]
        score, res = train_one(overrides, stage_dir / f"seed_{seed}", metric,
                               {"nora.hpo.stage": stage.name, "nora.hpo.seed": seed})
        runs.append({"seed": seed, "score": score, "outcome": getattr(res, "outcome", None),
                     "fingerprint": getattr(res, "fingerprint", None),
                     "run_dir": str(stage_dir / f"seed_{seed}")})
        echo(f"[nora hpo] refit seed {seed}: {metric}={score}")
    scores = [r["score"] for r in runs if r["score"] is not None]
    stats = seed_stats(scores).to_dict() if scores else None
    summary = {"kind": "refit", "stage": stage.name, "metric": metric, "from_stage":
               prior["stage"], "params": params, "source_trial": prior["trial"],
               "source_reproducible": prior["reproducible"], "base_overrides": base,
               "seeds": list(stage.refit_seeds), "runs": runs, "stats": stats,
               "failed_seeds": [r["seed"] for r in runs if r["score"] is None]}
    return _write(stage_dir, summary)


def run_stages(names: list[str], hpo_overrides: list[str], overrides: list[str], *, out: Path,
               study: str, storage: str | None = None, echo: Any = print) -> list[StageOutcome]:
    """Run stages in order; stop after a search stage that crowned nothing."""
    done = []
    for name in names:
        outcome = run_stage(name, hpo_overrides, overrides, out=out, study=study,
                            storage=storage, echo=echo)
        done.append(outcome)
        if not outcome.ok:
            break
    return done
