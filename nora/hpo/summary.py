"""The text a person reads after a stage: the trials by score, the best trial's score next
to its reproducibility verdict, flagged trials, and the refit's seed statistics."""
from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def stage_text(summary: dict[str, Any], top: int = 10) -> str:
    """A stage's summary (as in ``summary.json``) as lines of text."""
    if summary.get("kind") == "refit":
        return _refit_text(summary)
    metric, stage = summary["metric"], summary["stage"]
    trials = summary["trials"]
    scored = sorted((t for t in trials if t["score"] is not None), key=lambda t: t["score"],
                    reverse=summary["direction"] == "maximize")
    verdicts = {v["trial"]: v for v in summary["verified"]}
    lines = [f"hpo stage {stage}: {len(trials)} trials ({len(scored)} scored), "
             f"{summary['direction']} {metric}; study {summary['study_name']} in "
             f"{summary['storage']}"]
    shown = scored[:top]
    for t in shown:
        v = verdicts.get(t["number"])
        verdict = ("" if v is None else "  reproducible" if v["reproducible"]
                   else "  NOT REPRODUCIBLE")
        lines.append(f"  trial {t['number']:>3}  {metric}={t['score']:.4f}  "
                     f"{_params(t['params'])}{verdict}")
    if len(scored) > len(shown):
        lines.append(f"  ... {len(scored) - len(shown)} more trials in summary.json")
    unscored = [t for t in trials if t["score"] is None]
    if unscored:
        lines.append(f"  {len(unscored)} trial(s) without a score (halted, pruned or "
                     f"failed): {', '.join(str(t['number']) for t in unscored)}")
    for v in summary["flagged"]:
        step = (f", first divergent step {v['first_divergent_step']}"
                if v["first_divergent_step"] is not None else "")
        lines.append(f"FLAGGED: trial {v['trial']} scored {metric}={v['score']:.4f} but its "
                     f"rerun does NOT reproduce it (fingerprint {v['fingerprint']} != "
                     f"{v['rerun_fingerprint']}{step}); not crowned")
    best = summary["best"]
    if best:
        lines.append(f"best: trial {best['trial']}  {metric}={best['score']:.4f}  "
                     f"reproducible: yes (rerun fingerprint {best['rerun_fingerprint']} == "
                     f"{best['fingerprint']})  {_params(best['params'])}")
    else:
        lines.append("best: none crowned: no verified trial reproduced "
                     f"(checked {len(summary['verified'])})")
    return "\n".join(lines)


def _refit_text(s: dict[str, Any]) -> str:
    lines = [f"hpo stage refit: best config of stage {s['from_stage']} (trial "
             f"{s['source_trial']}, reproducible: {'yes' if s['source_reproducible'] else 'NO'})"
             f" over seeds {', '.join(map(str, s['seeds']))}: {_params(s['params'])}"]
    for r in s["runs"]:
        score = "halted/not finite" if r["score"] is None else f"{r['score']:.4f}"
        lines.append(f"  seed {r['seed']:>5}  {s['metric']}={score}  outcome={r['outcome']}")
    st = s["stats"]
    if st:
        ci = ("n/a (one seed)" if st["ci_low"] is None
              else f"[{st['ci_low']:.4f}, {st['ci_high']:.4f}] ({st['method']})")
        std = "n/a" if st["std"] is None else f"{st['std']:.4f}"
        lines.append(f"seed statistics ({st['n']} seeds): mean {st['mean']:.4f}, std {std}, "
                     f"IQM {st['iqm']:.4f}, 95% CI {ci}")
    if s["failed_seeds"]:
        lines.append(f"seeds without a score: {', '.join(map(str, s['failed_seeds']))}")
    return "\n".join(lines)
