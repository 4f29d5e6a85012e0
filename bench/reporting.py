"""`alignbench report`: read the results store and the suites, hand them to reports.report to render."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alignbench.bench.io import staged_folder
from alignbench.bench.recipes import BUDGETS
from alignbench.bench.results import ResultsStore
from alignbench.bench.suites import Suite, load_suites
from alignbench.reports.report import collect, render_report


def write_report(
    results_path: Path,
    out_dir: Path,
    budget: str | None = None,
    suites: Sequence[Suite] | None = None,
    formats: Sequence[str] = ("md", "tex", "html"),
) -> dict[str, Path]:
    """Tables and figures for every suite from the store (safe while run-all writes: SQLite WAL).

    `budget` picks which results to show (default: the budget of the most recent result). Results superseded
    by ones of newer code are not shown. Without `suites`: every built-in suite, comparison suites (the miniature
    protocol) first, and a comparison suite only when it has results. The files are written into a staging folder
    and swapped into `out_dir` at the end (bench.io.staged_folder): an error or a full disk leaves the previous
    report as it was.
    """
    sections = []
    with ResultsStore(results_path, create=False) as store:
        everything = store.records()
        records = [record for record in everything if not record.superseded]
        if budget is None and records:
            budget = records[-1].budget
        for suite in suites if suites is not None else sorted(load_suites(), key=lambda suite: not suite.is_comparison):
            results = collect(records, suite.name, budget)
            if suites is None and suite.is_comparison and not results.seeds:
                continue  # a comparison suite nobody ran (e.g. the shipped template) stays out of the default report
            for (row, seed), record_id in results.record_ids.items():  # per-image statistics, for the intervals
                stored = store.statistics(record_id)
                if stored is not None:
                    results.statistics.setdefault(row, {})[seed] = stored
            note = BUDGETS[results.budget].note if results.budget in BUDGETS else ""
            results.accuracy_shown = BUDGETS[results.budget].measures_accuracy if results.budget in BUDGETS else True
            sections.append((suite, suite.reference_table(), results, note))
    superseded = len(everything) - len(records)
    title = (f"Results: `{results_path}`; budget: {budget or '-'}; {len(records)} stored entries"
             + (f" ({superseded} more superseded by results of newer code, not shown)" if superseded else "") + ".")
    with staged_folder(out_dir) as staging:
        written = render_report(sections, staging, title, formats)
    return {kind: Path(out_dir) / path.relative_to(staging) for kind, path in written.items()}
