"""Sub-commands of `alignbench`, one module each.

Every module listed in COMMAND_MODULES defines `register(subparsers)`, which adds its parser and sets
`handler` to a function taking the parsed namespace. Modules keep their top-level imports light (argparse
only) so that `alignbench --help` and the evaluation commands start fast; heavy imports go inside handlers.
"""

COMMAND_MODULES = (
    "data",
    "evaluate",
    "models",
    "perf",
    "profile",
    "report",
    "results",
    "run_all",
    "suites",
    "train",
)
