"""`alignbench report` and `alignbench results`: tables and figures, and exports of the results store."""

from __future__ import annotations


def register(subparsers) -> None:
    report = subparsers.add_parser("report", help="paper-style tables (Markdown, LaTeX, HTML) and figures")
    report.add_argument("--results", default="alignbench-output/results.sqlite", help="results database")
    report.add_argument("--out", help="folder for report.md / .tex / .html and figures/ (default: beside the database)")
    report.add_argument("--budget", help="which budget's results to show (default: the most recent)")
    report.add_argument("--suite", action="append", help="only this suite (repeatable)")
    report.add_argument("--format", default="md,tex,html", help="comma-separated subset of md,tex,html")
    report.set_defaults(handler=run_report)

    results = subparsers.add_parser("results", help="export the results store")
    results.add_argument("--results", default="alignbench-output/results.sqlite", help="results database")
    results.add_argument("--format", choices=("csv", "parquet", "json"), default="csv", help="export format (default csv)")
    results.add_argument("--out", help="output file (default: stdout for csv / json)")
    results.set_defaults(handler=run_results)


def run_report(args) -> int:
    from pathlib import Path

    from alignbench.bench.errors import UserError
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


def run_results(args) -> int:
    import sys
    from pathlib import Path

    from alignbench.bench.errors import UserError
    from alignbench.bench.results import load_results

    frame = load_results(Path(args.results))
    if args.format == "parquet":
        if not args.out:
            raise UserError("--format parquet needs --out FILE")
        frame.to_parquet(args.out, index=False)
    elif args.format == "json":
        text = frame.to_json(orient="records", date_format="iso", indent=2)
        Path(args.out).write_text(text) if args.out else sys.stdout.write(text + "\n")
    else:
        frame.to_csv(args.out or sys.stdout, index=False)
    return 0
