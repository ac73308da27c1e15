"""``python -m nora verify RUN_DIR [--budget F] [-j N] [--seed S]``: audit a recorded run.

Exit codes: 0 verified, 1 failed, 2 bad usage or unreadable run, 4 unverifiable here.
"""
from __future__ import annotations

import argparse

EXIT_VERIFIED, EXIT_FAILED, EXIT_UNVERIFIABLE = 0, 1, 4  # 2: bad usage, via nora.cli


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid fraction {text!r}: expected a number in "
                                         "(0, 1], e.g. 0.05") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"budget {value!r} is outside (0, 1]: it is the "
                                         "fraction of the run's steps replayed, e.g. 0.05")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid worker count {text!r}: expected an int >= 1")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: expected an int >= 0")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``verify`` on the ``python -m nora`` parser."""
    p = subparsers.add_parser(
        "verify", help="audit a run from its records and checkpoints, replaying a sample of "
        "segments (exit 0 verified, 1 failed, 2 bad usage, 4 unverifiable here)")
    p.add_argument("run_dir", help="a run directory (runs/<timestamp>/)")
    p.add_argument("--budget", type=_fraction, default=0.05,
                   help="most steps replayed, as a fraction of the run's steps (default 0.05)")
    p.add_argument("-j", "--workers", type=_positive, default=None,
                   help="processes replaying segments side by side (default: one per CPU)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the random segment draw (default 0; recorded)")
    return p


def run(args: argparse.Namespace) -> int:
    """Verify ``args.run_dir``, print the report, map the verdict to the exit code."""
    from pathlib import Path

    from nora.templates import REPLAY_PRELOAD, REPLAY_SEEDS, warm

    # the replay template imports torch (seconds) while this process does and audits; a
    # run that needs no replay ends it unused (it is killed while still importing)
    if Path(args.run_dir, "manifest.json").is_file():
        warm(REPLAY_SEEDS, REPLAY_PRELOAD)
    from nora.analysis.verify import verify

    # a NoraError (bad usage, an unreadable run: exit 2) goes through nora.cli's error path
    result = verify(args.run_dir, budget=args.budget, workers=args.workers, seed=args.seed)
    print(result.report())
    print(f"[nora] verification record: {result.run_dir / 'verification.json'}")
    return {"verified": EXIT_VERIFIED, "failed": EXIT_FAILED,
            "unverifiable": EXIT_UNVERIFIABLE}[result.verdict]
