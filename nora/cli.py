"""``python -m nora``: train (with Hydra sweeps and launchers), replay, compare, report,
verify, package, hpo.

Exit codes: 0 done; 1 a verdict failed (replay, compare) or a run failed; 2 bad usage,
invalid config or unreadable input; 3 halted by norm enforcement; 130 / 143 stopped by
Ctrl-C / SIGTERM. Every ``NoraError`` reaches the user as one ``nora: error: ...`` line.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nora.errors import EXIT_FAILED, EXIT_HALTED, EXIT_OK, EXIT_USAGE, NoraError, one_line
from nora.exiting import exit_code_of, signals_as_interrupts

__all__ = ["COMMANDS", "EXIT_FAILED", "EXIT_HALTED", "EXIT_OK", "EXIT_USAGE", "main"]
EXIT_VERDICT = EXIT_FAILED


def cmd_train(args: argparse.Namespace) -> int:
    from nora.hydra_train import cmd_train as train

    return train(args.overrides, args.multirun, args.cfg)


def cmd_replay(args: argparse.Namespace) -> int:
    from nora.replaying import replay

    verdict = replay(args.run_dir, progress=True, force=args.force)
    print(f"[nora] {verdict.message}\n[nora] replay records: {verdict.replay_dir}")
    return EXIT_OK if verdict.reproducible else EXIT_VERDICT


def cmd_compare(args: argparse.Namespace) -> int:
    import json

    from nora.analysis.compare import compare

    result = compare(Path(args.runs[0]), Path(args.runs[1]))
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.report())
    return EXIT_OK if result.identical else EXIT_VERDICT


def cmd_report(args: argparse.Namespace) -> int:
    from nora.reporting import main as report_main

    return report_main(args.paths, args.out)


class _TrainParser(argparse.ArgumentParser):
    """``train --help`` lists every config group's choices, read only when asked for."""

    def format_help(self) -> str:
        if self.prog.endswith(" train") and not self.epilog:
            from nora.cli_help import train_epilog
            self.epilog = train_epilog()
        return super().format_help()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nora", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_TrainParser)
    p = sub.add_parser("train", help="train one run (or a sweep with --multirun)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="key=value, e.g. regime=strict")
    p.add_argument("--multirun", "-m", action="store_true",
                   help="sweep comma lists (regime=balanced,strict seed=1,2)")
    p.add_argument("--cfg", choices=["job"], default=None,
                   help="print the composed, validated config of each job and exit")
    p = sub.add_parser("replay", help="re-execute a run from its manifest")
    p.add_argument("run_dir")
    p.add_argument("--force", action="store_true",
                   help="replay even a manifest whose sizes exceed nora.replaying.LIMITS")
    p = sub.add_parser("compare", help="verdict, first divergent step and tensors")
    p.add_argument("runs", nargs=2)
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p = sub.add_parser("report", help="aggregate runs / pytest reports")
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", default=None, help="output folder (default reports/report-<time>)")
    for module in _EXTRA.values():
        module.add_parser(sub)
    return parser


def _extra() -> dict[str, Any]:
    from nora import cli_hpo, cli_package, cli_verify

    return {"package": cli_package, "hpo": cli_hpo, "verify": cli_verify}


# Subcommands in modules of their own (``add_parser(sub)``, ``run(args) -> int``).
_EXTRA: dict[str, Any] = {}
# Subcommand name -> handler; a new subcommand adds its parser in _parser and a line here.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train, "replay": cmd_replay, "compare": cmd_compare, "report": cmd_report,
}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if argv[:1] == ["train"]:    # options anywhere among the overrides, as Hydra allows
        train = parser._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
        return train.parse_intermixed_args(argv[1:], argparse.Namespace(command="train"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    _EXTRA.update(_extra())
    args = _parse(argv)
    with signals_as_interrupts():
        try:
            if args.command in _EXTRA:
                return _EXTRA[args.command].run(args)
            return COMMANDS[args.command](args)
        except NoraError as exc:
            print(f"nora: error: {one_line(str(exc))}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt as exc:
            where = getattr(exc, "run_dir", None)
            if where:
                print(file=sys.stderr)            # below the run's progress bar
            print(f"nora: interrupted ({exc.args[0] if exc.args else 'SIGINT'})"
                  + (f"; records so far: {where} (status 'interrupted')" if where else ""),
                  file=sys.stderr)
            return exit_code_of(exc)
