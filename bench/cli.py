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
from alignbench.bench.plugins import load_plugins

# Commands that never build or look up a model (their start-up time matters: `eval` is benchmarked).
COMMANDS_WITHOUT_MODELS = ("eval", "data", "datasets", "perf")
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
    _add_plugin_option(parser)
    return parser


def _add_plugin_option(parser: argparse.ArgumentParser, depth: int = 0) -> None:
    """`--plugin` on the program and on every (sub-)command, each level with its own destination: argparse lets a
    sub-command's default overwrite a value given before it."""
    parser.add_argument(
        "--plugin", action="append", dest=f"plugins_{depth}", metavar="PATH_OR_MODULE",
        help="load a plugin (a .py file or a module) that registers necks or models; repeatable",
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                _add_plugin_option(subparser, depth + 1)


def _plugins_of(args: argparse.Namespace) -> list[str]:
    return [spec for key, value in sorted(vars(args).items()) if key.startswith("plugins_") and value for spec in value]


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        # Finding installed entry points scans every distribution (~50 ms): only for commands that use models.
        load_plugins(_plugins_of(args), entry_points=args.command not in COMMANDS_WITHOUT_MODELS)
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
