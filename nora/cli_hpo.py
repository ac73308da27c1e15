"""``python -m nora hpo hpo=<stage|all> [hpo.<key>=v ...] [OVERRIDE ...]``: staged search.

Exit codes: 0 every stage crowned a reproducing best (refit: every seed scored); 1 a stage
crowned none (its best trials did not reproduce, or none scored); 2 bad usage.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_FLAGGED, EXIT_USAGE = 0, 1, 2


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from nora.hpo.order import STAGE_ORDER

    p = subparsers.add_parser(
        "hpo", help="staged Optuna search; the best trial is rerun for a reproducibility "
                    "verdict",
        description=f"Stages: {', '.join(STAGE_ORDER)} (nora/conf/hpo/*.yaml) or all. "
                    "hpo.<key>=value changes the stage (hpo.trials=4 hpo.epochs=1); other "
                    "key=value overrides go to every run (trainer.train_subset=256).")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                   help="hpo=<stage|all>, hpo.<key>=value, or a run override key=value")
    p.add_argument("--study", default="nora", help="study name (default nora)")
    p.add_argument("--out", default=None,
                   help="folder for trials and summaries (default runs/hpo/<study>)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL (default sqlite:///<out>/optuna.db)")
    return p


def run(args: argparse.Namespace) -> int:
    from nora.hpo import STAGE_ORDER, run_stages, stage_text

    stage = [o for o in args.overrides if o.startswith("hpo=")]
    hpo_ovs = [o for o in args.overrides if o.startswith("hpo.") and "=" in o]
    run_ovs = [o for o in args.overrides if o not in stage and o not in hpo_ovs]
    if len(stage) != 1:
        print("nora hpo: error: give exactly one hpo=<stage> (choices: "
              f"{', '.join(STAGE_ORDER)}, all)", file=sys.stderr)
        return EXIT_USAGE
    name = stage[0].split("=", 1)[1]
    names = list(STAGE_ORDER) if name == "all" else [name]
    out = Path(args.out) if args.out else Path("runs") / "hpo" / args.study
    outcomes = run_stages(names, hpo_ovs, run_ovs, out=out, study=args.study,
                          storage=args.storage)  # a NoraError: nora.cli's one error path
    for o in outcomes:
        print(f"\n{stage_text(o.summary)}\n[nora hpo] summary: {o.path}")
    return EXIT_OK if outcomes and all(o.ok for o in outcomes) else EXIT_FLAGGED
