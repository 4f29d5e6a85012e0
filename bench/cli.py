"""The `alignbench` command line (also `python -m bench`).

Exit status: 0 on success, 2 on bad input or usage with one line on stderr naming the file or field.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from bench.commands import COMMAND_MODULES
from bench.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    """The full parser: one sub-command per module in bench.commands."""
    parser = argparse.ArgumentParser(
        prog="alignbench",
        description="Evaluate and analyse feature-pyramid necks (FPN, FaPN, SFNet, FPT).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"bench.commands.{module_name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        status = args.handler(args)
    except UserError as error:
        message = " ".join(str(error).split())  # always exactly one line
        print(f"alignbench: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alignbench: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
