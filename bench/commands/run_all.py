"""`alignbench run-all`: the main job (interim: synthetic data and oracle baselines)."""

from __future__ import annotations


def register(subparsers) -> None:
    run_all = subparsers.add_parser("run-all", help="run everything on the built-in synthetic data and print the table")
    run_all.add_argument("--data", default="synthetic", help="'synthetic' (default) or 'cityscapes=PATH'")
    run_all.add_argument("--out", default="alignbench-output", help="folder for the results (default alignbench-output)")
    run_all.set_defaults(handler=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from bench.runall import run_all

    run_all(args.data, Path(args.out), progress=sys.stderr.isatty())
    return 0
