"""Sub-commands of `alignbench`, one module each.

Every module listed in COMMAND_MODULES defines `register(subparsers)`, which adds its parser and sets
`handler` to a function taking the parsed namespace. Modules keep their top-level imports light (the standard
library and the harness's error type) so that `alignbench --help` and the evaluation commands start fast: every
import inside a handler is there for that start-up time (each command imports only what it runs: torch, the models,
matplotlib, pycocotools, ...).
"""

COMMAND_MODULES = (
    "data",
    "datasets",
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
