"""`alignbench run-all`: every suite, trained and evaluated, into the results store, then the report."""

from __future__ import annotations

from bench.commands.common import seed_list


def register(subparsers) -> None:
    run_all = subparsers.add_parser(
        "run-all",
        help="run every suite (default: synthetic data, smoke budget, best device) and write the report",
        description="Entries already complete in the results store are skipped: a re-run resumes.",
    )
    run_all.add_argument("--suite", action="append", help="run only this suite (repeatable; see bench/suites/)")
    run_all.add_argument("--data", action="append",
                         help="'synthetic' (default), 'cityscapes=PATH' or 'coco=PATH' (repeatable)")
    run_all.add_argument("--budget", default="smoke", help="smoke (CPU minutes, default), short (GPU minutes) or paper")
    run_all.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    run_all.add_argument("--results", default="alignbench-output/results.sqlite", help="results database (default alignbench-output/results.sqlite)")
    run_all.add_argument("--seeds", type=seed_list, default=[0], help="comma-separated seeds (default 0)")
    run_all.add_argument("--out", help="report folder parent (default: beside the results database)")
    run_all.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    run_all.set_defaults(handler=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from bench.runall import run_all

    summary = run_all(
        suites=[name for value in args.suite or [] for name in value.split(",") if name] or None,
        data=args.data or ["synthetic"],
        budget=args.budget,
        device=args.device,
        results=Path(args.results),
        seeds=args.seeds,
        out_dir=Path(args.out) if args.out else None,
        progress=sys.stderr.isatty(),
        report=not args.no_report,
    )
    print(
        f"run-all: {summary.planned} entries, {summary.completed_before} already complete, {summary.ran} run, "
        f"{len(summary.failed)} failed, {summary.seconds / 60:.1f} min"
    )
    for line in summary.skipped:
        print(f"  skipped {line}")
    for line in summary.failed:
        print(f"  FAILED {line}")
    if not args.no_report:
        report = Path(args.out) if args.out else Path(args.results).parent
        print(f"report: {report / 'report' / 'report.md'} (.tex, .html)")
    return 1 if summary.failed else 0
