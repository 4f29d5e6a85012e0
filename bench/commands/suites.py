"""`alignbench suites`: the suites `run-all` knows (built-in paper tables and comparison suites, or files given).

With --json: one object per suite with its name, kind ("paper" or "comparison"), paper, table, title, task,
recipe, metrics, baseline, default seeds / budget / data, file and rows (row, model).
"""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("suites", help="list the suites (paper tables and comparison suites) with their rows")
    parser.add_argument("--suite", action="append", help="only this suite, or a path to a suite file of your own (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the list as JSON instead of a table")
    parser.set_defaults(handler=run_suites)


def describe(suite) -> dict:
    """A suite as plain data (what `alignbench suites --json` prints)."""
    return {
        "name": suite.name,
        "kind": "comparison" if suite.is_comparison else "paper",
        "paper": suite.paper,
        "table": suite.table,
        "title": suite.title,
        "task": suite.task,
        "recipe": suite.recipe,
        "metrics": list(suite.metrics),
        "baseline": suite.baseline_row,
        "seeds": list(suite.seeds) if suite.seeds else None,
        "budget": suite.budget,
        "data": list(suite.data) if suite.data else None,
        "file": str(suite.path),
        "rows": [{"row": row.row, "model": row.model} for row in suite.rows],
    }


def run_suites(args) -> int:
    from alignbench.bench.suites import load_suites
    from alignbench.reports.console import text_table

    names = [name for value in args.suite or [] for name in value.split(",") if name] or None
    suites = [describe(suite) for suite in load_suites(names)]
    if args.json:
        print(json.dumps(suites, indent=2, ensure_ascii=False))
        return 0
    lines = []
    for suite in suites:
        table = suite["title"] if suite["kind"] == "comparison" else f"{suite['paper']} {suite['table']}"
        rows = ", ".join(row["model"] for row in suite["rows"])
        lines.append([suite["name"], suite["kind"], suite["task"], table, str(len(suite["rows"])), rows])
    print(text_table(["suite", "kind", "task", "table / title", "rows", "models"], lines))
    return 0
