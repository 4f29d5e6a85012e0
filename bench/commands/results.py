"""`alignbench results`: export the results store (CSV, JSON or Parquet).

The store is opened read-only (it is never written to, nor switched to WAL), and `--out` is written
atomically: a temporary file in the same folder, then a rename, so a full disk or a kill never leaves half
an export nor damages an earlier one.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alignbench.bench.commands.common import output_file
from alignbench.bench.errors import UserError


def register(subparsers) -> None:
    results = subparsers.add_parser("results", help="export the results store")
    results.add_argument("--results", default="alignbench-output/results.sqlite", help="results database")
    results.add_argument("--format", choices=("csv", "parquet", "json"), default="csv", help="export format (default csv)")
    results.add_argument("--out", type=output_file, help="output file (default: stdout for csv / json)")
    results.set_defaults(handler=run_results)


def run_results(args) -> int:
    from alignbench.bench.io import write_atomic
    from alignbench.bench.results import load_results

    if args.format == "parquet" and not args.out:
        raise UserError("--format parquet needs --out FILE")
    frame = load_results(Path(args.results))
    if args.format == "parquet":
        write_atomic(args.out, lambda handle: frame.to_parquet(handle, index=False), binary=True)
        return 0
    if args.format == "json":
        text = frame.to_json(orient="records", date_format="iso", indent=2) + "\n"
    else:
        text = frame.to_csv(index=False)
    if args.out:
        write_atomic(args.out, lambda handle: handle.write(text))
    else:
        sys.stdout.write(text)
    return 0
