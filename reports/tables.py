"""Paper-style tables: the measured value beside the paper's, improvements in parentheses, best in bold.

A `Table` is format-free (header, rows of cells, footnotes); `to_markdown`, `to_latex` (booktabs) and
`to_html` render it. Measured accuracy is stored as fractions and shown in percent like the papers; how each
metric is shown (percent or not, decimals, which way is better) comes from alignbench.metrics.vocabulary.
"""

from __future__ import annotations

import html
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from alignbench.metrics.vocabulary import METRICS


@dataclass
class Cell:
    text: str
    bold: bool = False


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[Cell]]
    footnotes: list[str] = field(default_factory=list)
    separators: set[int] = field(default_factory=set)  # rule above these row indices (improvement lines)


def display_value(metric: str, value: float) -> float:
    """Fractions -> percent (the vocabulary's `fraction` metrics); everything else as stored."""
    return 100.0 * value if METRICS[metric].fraction else value


def digits(metric: str) -> int:
    return METRICS[metric].digits


def paper_text(metric: str, value: float | None) -> str:
    """A paper's number as the table shows it: the vocabulary's `paper_digits` decimals, or as printed."""
    if value is None:
        return "-"
    places = METRICS[metric].paper_digits
    return f"{value:g}" if places is None else f"{value:.{places}f}"


def format_measured(metric: str, values: Sequence[float]) -> str:
    """Mean of the seeds (with ± population std when there are several and they differ), in display units."""
    shown = [display_value(metric, v) for v in values if v is not None and not math.isnan(v)]
    if not shown:
        return "-"
    mean = statistics.fmean(shown)
    text = f"{mean:.{digits(metric)}f}"
    spread = statistics.pstdev(shown) if len(shown) > 1 else 0.0
    if round(spread, digits(metric)) > 0:  # no "±0.00" on deterministic figures (params, GMACs)
        text += f"±{spread:.{digits(metric)}f}"
    return text


def signed(value: float | None, metric: str) -> str:
    """An improvement as the papers print it: (+2.6)."""
    if value is None or math.isnan(value):
        return ""
    rounded = round(value, digits(metric)) + 0.0  # + 0.0 turns -0.0 into 0.0: no "(-0.0)"
    return f"({rounded:+.{digits(metric)}f})"


def best_index(metric: str, values: Sequence[float | None]) -> int | None:
    """Row index of the best measured value (the vocabulary's `higher_is_better`: lowest for params / GFLOPs /
    latency, else highest)."""
    candidates = [(v, i) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    if not candidates:
        return None
    return (max if METRICS[metric].higher_is_better else min)(candidates)[1]


def to_markdown(table: Table) -> str:
    def cell(c: Cell) -> str:
        text = c.text.replace("|", "\\|")
        return f"**{text}**" if c.bold and text else text

    lines = [f"### {table.title}", "", "| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    for row in table.rows:
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    lines.append("")
    lines += [f"{note}  " for note in table.footnotes]
    return "\n".join(lines).rstrip() + "\n"


_LATEX_SPECIALS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                   "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs table environment."""
    columns = "l" + "r" * (len(table.header) - 1)

    def cell(c: Cell) -> str:
        text = latex_escape(c.text)
        return rf"\textbf{{{text}}}" if c.bold and text else text

    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(table.title)}}}",
             rf"\begin{{tabular}}{{{columns}}}", r"\toprule", " & ".join(latex_escape(h) for h in table.header) + r" \\", r"\midrule"]
    for index, row in enumerate(table.rows):
        if index in table.separators:
            lines.append(r"\midrule")
        lines.append(" & ".join(cell(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.footnotes:
        lines.append(r"\par\footnotesize " + " ".join(latex_escape(note) for note in table.footnotes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def html_text(text: str) -> str:
    """Escaped text for HTML, Markdown's `code` spans as <code> (no literal backticks on the page)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def html_anchor(title: str) -> str:
    """The id of a table's heading, for the report's table of contents."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def to_html(table: Table) -> str:
    def cell(c: Cell, tag: str = "td") -> str:
        text = html.escape(c.text)
        return f"<{tag}>{'<b>' + text + '</b>' if c.bold and text else text}</{tag}>"

    parts = [f'<h3 id="{html_anchor(table.title)}">{html_text(table.title)}</h3>', "<table>", "<thead><tr>"]
    parts += [f"<th>{html.escape(h)}</th>" for h in table.header]
    parts.append("</tr></thead><tbody>")
    for index, row in enumerate(table.rows):
        style = ' class="improvement"' if index in table.separators else ""
        parts.append(f"<tr{style}>" + "".join(cell(c) for c in row) + "</tr>")
    parts.append("</tbody></table>")
    parts += [f'<p class="footnote">{html_text(note)}</p>' for note in table.footnotes]
    return "\n".join(parts) + "\n"
