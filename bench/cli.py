"""The `alignbench` command line (also `python -m alignbench`).

Exit status: 0 on success, 2 on bad input or usage with one line on stderr naming the file or field.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

from alignbench.bench.commands import COMMAND_MODULES
from alignbench.bench.errors import UserError

# storage failures that are the machine's state, not a bug: reported in one line like bad input
_STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES}


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit status 2), like input errors."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser: one sub-command per module in bench.commands."""
    parser = OneLineErrorParser(
        prog="alignbench",
        description="Evaluate and analyse feature-pyramid necks (FPN, FaPN, SFNet, FPT).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log progress (-v) or debug messages (-vv)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"alignbench.bench.commands.{module_name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        status = args.handler(args)
    except UserError as error:
        message = " ".join(str(error).split())  # always exactly one line
        print(f"alignbench: error: {message}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in _STORAGE_ERRORS:
            raise
        # a full disk or read-only media met anywhere (a report's figures, a library's own writes): one line
        print(f"alignbench: error: {error.filename or 'cannot write'}: {error.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alignbench: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
