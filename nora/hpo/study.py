"""One search stage over Optuna's own API: each trial is a NORA run; afterwards the best
trials are rerun and only a config whose rerun has the same fingerprint is crowned.

A score from a run that does not reproduce is luck the next run will not have: the search
reports it, flags it, and moves on to the next-best trial (up to ``verify_top`` reruns).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nora.errors import ConfigError, NormViolationError
from nora.hpo.stages import CategoricalParam, FloatParam, HpoStage, Param, as_override

__all__ = ["TrialRecord", "Verification", "SearchResult", "run_search", "train_one"]


@dataclass
class TrialRecord:
    number: int
    params: dict[str, Any]
    score: float | None
    outcome: str
    fingerprint: str | None
    run_dir: str
    state: str


@dataclass
class Verification:
    """A rerun of one trial's config: reproducible when the fingerprints are equal."""

    trial: int
    score: float
    params: dict[str, Any]
    reproducible: bool
    fingerprint: str | None
    rerun_fingerprint: str | None
    rerun_dir: str
    first_divergent_step: int | None = None


@dataclass
class SearchResult:
    stage: str
    study_name: str
    storage: str
    metric: str
    direction: str
    trials: list[TrialRecord] = field(default_factory=list)
    verified: list[Verification] = field(default_factory=list)

    @property
    def best(self) -> Verification | None:
        """The best trial whose rerun reproduced it (the crowned one), if any."""
        return next((v for v in self.verified if v.reproducible), None)

    @property
    def flagged(self) -> list[Verification]:
        return [v for v in self.verified if not v.reproducible]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["best"] = asdict(self.best) if self.best else None
        out["flagged"] = [asdict(v) for v in self.flagged]
        return out


def train_one(overrides: list[str], run_dir: Path, metric: str,
              tags: dict[str, Any] | None = None) -> tuple[float | None, Any]:
    """Train one config; (score, result). A halted run scores None; a missing metric is a
    usage error naming the metrics the run has. With ``tracking=`` set, the run is logged
    with ``tags`` (logging is idempotent, so a ``nora.train`` that logs too is harmless)."""
    import nora

    config = nora.load_config(overrides)
    halted = False
    try:
        result = nora.train(config, run_dir=run_dir)
    except NormViolationError as exc:
        result, halted = exc.result, True
    if config.tracking.name != "none":
        from nora.tracking import log_run

        log_run(run_dir, config, extra_tags=tags)
    if halted:                           # stopped by the agent: no score to compare
        return None, result
    if metric not in result.metrics:
        numeric = sorted(k for k, v in result.metrics.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise ConfigError(f"hpo.metric={metric!r} is not a metric of this run; valid "
                          f"choices: {', '.join(numeric)}")
    score = float(result.metrics[metric])
    return (score if math.isfinite(score) else None), result


def _suggest(trial: Any, key: str, p: Param) -> Any:
    if isinstance(p, CategoricalParam):
        return trial.suggest_categorical(key, list(p.choices))
    if isinstance(p, FloatParam):
        return trial.suggest_float(key, p.low, p.high, log=p.log)
    return trial.suggest_int(key, p.low, p.high, log=p.log)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("nora hpo needs the optuna package; install it with "
                          "pip install 'nora[hpo]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _trial_overrides(base: list[str], params: dict[str, Any]) -> list[str]:
    return [*base, *(as_override(k, v) for k, v in params.items())]


def run_search(stage: HpoStage, base: list[str], space: dict[str, Param], *, out_dir: Path,
               storage: str, study_name: str, metric: str, echo: Any = print) -> SearchResult:
    """Run ``stage.trials`` trials (counting those already in a resumed study), then rerun
    the best ones until one reproduces."""
    optuna = _optuna()
    sampler = (optuna.samplers.TPESampler(seed=stage.sampler_seed) if stage.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=stage.sampler_seed))
    study = optuna.create_study(study_name=study_name, storage=storage, sampler=sampler,
                                direction=stage.direction, load_if_exists=True)
    result = SearchResult(stage.name, study_name, storage, metric, stage.direction)

    def objective(trial: Any) -> float:
        params = {k: _suggest(trial, k, p) for k, p in space.items()}
        overrides = _trial_overrides(base, params)
        run_dir = out_dir / f"trial_{trial.number:03d}"
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("run_dir", str(run_dir))
        score, res = train_one(overrides, run_dir, metric,
                               {"nora.hpo.stage": stage.name, "nora.hpo.trial": trial.number,
                                "nora.hpo.study": study_name})
        trial.set_user_attr("outcome", getattr(res, "outcome", None))
        trial.set_user_attr("fingerprint", getattr(res, "fingerprint", None))
        shown = "halted/not finite" if score is None else f"{metric}={score:.4f}"
        echo(f"[nora hpo] {stage.name} trial {trial.number}: {shown} "
             f"outcome={getattr(res, 'outcome', None)} {params}")
        if score is None:
            raise optuna.TrialPruned(f"run {run_dir} halted or scored a non-finite {metric}")
        return score

    done = sum(t.state.is_finished() for t in study.trials)
    if stage.trials > done:
        study.optimize(objective, n_trials=stage.trials - done, catch=())
    for t in study.trials:
        result.trials.append(TrialRecord(
            t.number, dict(t.params), t.value, str(t.user_attrs.get("outcome")),
            t.user_attrs.get("fingerprint"), str(t.user_attrs.get("run_dir")), t.state.name))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    complete.sort(key=lambda t: t.value, reverse=stage.direction == "maximize")
    for t in complete[:stage.verify_top]:
        v = verify_trial(t, metric, out_dir, study_name)
        result.verified.append(v)
        echo(f"[nora hpo] {stage.name} rerun of trial {t.number} ({metric}={t.value:.4f}): "
             + ("reproducible" if v.reproducible else
                f"does NOT reproduce ({v.fingerprint} != {v.rerun_fingerprint})"))
        if v.reproducible:
            break
    return result


def verify_trial(trial: Any, metric: str, out_dir: Path, study_name: str = "") -> Verification:
    """Rerun a finished trial's exact overrides; compare fingerprints (and, when they
    differ, find the first divergent step)."""
    overrides = list(trial.user_attrs["overrides"])
    rerun_dir = out_dir / f"trial_{trial.number:03d}_rerun"
    if rerun_dir.exists():
        import shutil

        shutil.rmtree(rerun_dir)
    _, res = train_one(overrides, rerun_dir, metric,
                       {"nora.hpo.rerun_of": trial.number, "nora.hpo.study": study_name})
    original = trial.user_attrs.get("fingerprint")
    rerun = getattr(res, "fingerprint", None)
    same = original is not None and original == rerun
    step = None
    if not same:
        from nora.analysis import compare

        try:
            step = compare(trial.user_attrs["run_dir"], rerun_dir).first_divergent_step
        except Exception:  # noqa: BLE001 - the verdict stands without the step
            step = None
    return Verification(trial.number, float(trial.value), dict(trial.params), same, original,
                        rerun, str(rerun_dir), step)
