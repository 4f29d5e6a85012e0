"""`alignbench report`: tables and figures of the results store (`alignbench results` exports it: commands/results.py)."""

from __future__ import annotations

from pathlib import Path

from alignbench.bench.commands.common import budget_name, output_folder
from alignbench.bench.errors import UserError


def register(subparsers) -> None:
    report = subparsers.add_parser("report", help="paper-style tables (Markdown, LaTeX, HTML) and figures")
    report.add_argument("--results", default="alignbench-output/results.sqlite", help="results database")
    report.add_argument("--out", type=output_folder, help="folder for report.md / .tex / .html and figures/ (default: beside the database)")
    report.add_argument("--budget", type=budget_name, help="which budget's results to show (default: the most recent)")
    report.add_argument("--suite", action="append", help="only this suite (repeatable)")
    report.add_argument("--format", default="md,tex,html", help="comma-separated subset of md,tex,html")
    report.set_defaults(handler=run_report)


def run_report(args) -> int:
    from alignbench.bench.reporting import write_report
    from alignbench.bench.suites import load_suites

    formats = [f for f in args.format.split(",") if f]
    unknown = sorted(set(formats) - {"md", "tex", "html"})
    if unknown or not formats:
        raise UserError(f"--format: expected a subset of md,tex,html, got {args.format!r}")
    results = Path(args.results)
    out = Path(args.out) if args.out else results.parent / "report"
    suites = load_suites([n for value in args.suite for n in value.split(",") if n]) if args.suite else None
    written = write_report(results, out, budget=args.budget, suites=suites, formats=formats)
    for path in written.values():
        print(path)
    return 0

