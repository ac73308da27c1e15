"""``python -m nora package RUN_DIR [--dest URL] [--out PATH]`` and
``python -m nora package --check ARCHIVE``. Exit codes: 0 ok, 1 a check failed, 2 bad usage.
"""
from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_CHECK, EXIT_USAGE = 0, 1, 2


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "package", help="archive a run with SHA256SUMS, copy it through fsspec, check one",
        description="Archive RUN_DIR as RUN_DIR.zip (members + SHA256SUMS, and RUN_DIR.zip."
                    "sha256); --dest copies it to a folder URL (/path, s3://bucket/prefix, "
                    "memory://x) and verifies the copy; --check ARCHIVE refuses an archive "
                    "whose checksums do not match, naming each bad file.")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR")
    p.add_argument("--dest", metavar="URL", help="folder URL to copy the archive to")
    p.add_argument("--out", metavar="PATH", help="archive path (default RUN_DIR.zip)")
    p.add_argument("--check", metavar="ARCHIVE", help="verify an archive (path or URL)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; every error becomes a message and an exit code, no traceback."""
    from nora.packaging import check_archive, package_run

    if (args.check is None) == (args.run_dir is None):
        print("nora package: error: give RUN_DIR to package a run, or --check ARCHIVE to "
              "verify one (not both)", file=sys.stderr)
        return EXIT_USAGE
    if args.check is not None and (args.dest or args.out):
        print("nora package: error: --dest/--out package a RUN_DIR; --check takes none",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.check is not None:
            result = check_archive(args.check)
            if not result.ok:
                print(f"[nora] REFUSED {args.check}: {len(result.problems)} problem(s)",
                      file=sys.stderr)
                for problem in result.problems:
                    print(f"  {problem}", file=sys.stderr)
                return EXIT_CHECK
            print(f"[nora] {args.check}: {result.files} files match SHA256SUMS")
            return EXIT_OK
        done = package_run(args.run_dir, dest=args.dest, out=args.out)
    except OSError as exc:  # NoraErrors go through nora.cli's one error path
        print(f"nora package: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"[nora] packaged {done.files} files: {done.archive} (sha256 {done.sha256})")
    if done.dest_url:
        print(f"[nora] copied and verified: {done.dest_url}")
    return EXIT_OK
