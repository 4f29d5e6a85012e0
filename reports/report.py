"""Paper-mirroring tables (Markdown, LaTeX, one static HTML page) and figures from measured results.

For every suite: the paper's rows and columns, our measured value beside the paper's, improvements in
parentheses as the papers print them, the best measured value in bold, and a footnote with the data,
budget, device, seeds, the code that made the numbers (package version, git commit and each row's model
definition fingerprint) and the definitions (boundary bands, GMACs). With several seeds a cell shows the
mean and the spread (population standard deviation). Results superseded by ones of newer code are left out.
A paper suite measured for params / GMACs only (the default run's fidelity pass) is a fidelity table: the counts
beside the paper's with the gap, and "—" with a footnote for any accuracy column it shows. The summary at the top
says what was run and, per comparison suite, whether each row beats the baseline with 95% confidence.
"""

from __future__ import annotations

import base64
import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from alignbench.metrics.vocabulary import METRICS
from alignbench.reports import significance
from alignbench.reports.console import BOUNDARY_FOOTNOTE, band_caveat
from alignbench.reports.figures import confusion_figure
from alignbench.reports.tables import (
    Cell,
    Table,
    display_value,
    format_measured,
    html_anchor,
    html_text,
    paper_text,
    signed,
    to_html,
    to_latex,
    to_markdown,
)

log = logging.getLogger(__name__)

MAC_FOOTNOTE = (
    "GFLOPs columns: measured GMACs (multiply-accumulates, what the papers call GFLOPs) at the input size the "
    "paper counts at (the row's stated size, else the model's: e.g. 1024 x 1024 for SFNet, `alignbench models`)."
)


@dataclass
class SuiteResults:
    """Measured values of one suite: row -> metric -> one value per seed, with their provenance."""

    values: dict[str, dict[str, list[float]]]
    class_iou: dict[str, dict[str, float]]  # row -> class -> IoU of the first seed (for the bar chart)
    seeds: list[int]
    devices: list[str]
    data: list[str]
    budget: str | None
    timing: list[str]
    code: dict[str, str] = field(default_factory=dict)  # row -> the code that made its numbers
    random_init: bool = False  # some row's model was trained from random initialisation
    by_seed: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)  # row -> metric -> seed -> value
    record_ids: dict[tuple[str, int], int] = field(default_factory=dict)  # (row, seed) -> results store id
    statistics: dict[str, dict[int, dict]] = field(default_factory=dict)  # row -> seed -> per-image arrays
    class_iou_by_seed: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)  # the `--set KEY=VALUE` values the records were made with
    band_share: dict[str, float] = field(default_factory=dict)  # band width -> its share of the evaluated pixels
    band_width_px: dict[str, list[int]] = field(default_factory=dict)  # band width -> the widths it had on the maps
    classes: list[str] = field(default_factory=list)  # the dataset's class names in train-id order (as recorded)

    def class_order(self, names) -> list[str]:
        """`names` in the dataset's class order (the metrics JSON is stored with sorted keys), unknown ones last."""
        names = set(names)
        return [name for name in self.classes if name in names] + sorted(names - set(self.classes))

    def runs(self, key: str) -> list[dict]:
        """The per-image statistics of a row, one per seed of the suite (empty unless every seed has them)."""
        stored = self.statistics.get(key, {})
        seeds = sorted({seed for (row, seed) in self.record_ids if row == key})
        return [stored[seed] for seed in seeds] if seeds and all(seed in stored for seed in seeds) else []
    accuracy_shown: bool = True  # False: the budget says nothing about accuracy (smoke); accuracy cells show "—"


NOT_A_RESULT = "—"
HIDDEN_ACCURACY_FOOTNOTE = (
    "—: accuracy was measured under the {budget} budget, which exercises the pipeline and says nothing about "
    "accuracy, so it is not shown; nothing is bolded and no improvement is computed. The params / GMACs "
    "columns are real measurements.")
NOT_MEASURED_FOOTNOTE = (
    "—: not measured in the default run (params/GMACs only); `--budget short|paper` trains and measures accuracy.")
GAP_LIMIT_PERCENT = 5.0
GAP_FOOTNOTE = (
    "Gap: our params / GMACs relative to the paper's, (ours - paper) / paper. ⚑ marks gaps over 5%; their "
    "known causes (what the papers count, input sizes, heads) are explained in docs/fidelity.md.")
RANDOM_INIT_FOOTNOTE = ("Trained from random initialisation (no --backbone-weights or --checkpoint): the papers start "
                        "from ImageNet-pretrained backbones, so these numbers are not comparable with theirs.")


def code_label(record) -> str:
    """The code that made a record: package version, git commit and model definition fingerprint (short)."""
    if not getattr(record, "code_version", None):
        return "code not recorded (a store of schema 1)"
    commit = f", git {record.git_commit[:7]}" if record.git_commit else ""
    return f"alignbench {record.code_version}{commit}, model {(record.model_fingerprint or '?')[:8]}"


def collect(records: Sequence, suite_name: str, budget: str | None) -> SuiteResults:
    """The latest current (not superseded) record of each (row, seed) of a suite under a budget (and its
    most recent data)."""
    mine = [r for r in records if r.suite == suite_name and (budget is None or r.budget == budget)
            and not getattr(r, "superseded", False)]
    if mine:
        latest_data = mine[-1].data
        mine = [r for r in mine if r.data == latest_data]
    latest = {}
    for record in mine:  # records come oldest first: later ones replace earlier ones
        latest[(record.row, record.seed)] = record
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    by_seed: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    class_iou: dict[str, dict[str, float]] = {}
    class_iou_by_seed: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    band_share: dict[str, float] = {}
    band_width_px: dict[str, list[int]] = {}
    classes: list[str] = []
    timing = set()
    for (row, seed), record in sorted(latest.items(), key=lambda item: item[0]):
        for metric, value in record.metrics.items():
            if isinstance(value, (int, float)) or value is None:
                values[row][metric].append(math.nan if value is None else float(value))
                by_seed[row][metric][seed] = math.nan if value is None else float(value)
        if "class_IoU" in record.metrics:
            class_iou_by_seed[row][seed] = record.metrics["class_IoU"]
        if "class_IoU" in record.metrics and row not in class_iou:
            class_iou[row] = record.metrics["class_IoU"]
        if record.metrics.get("classes") and not classes:
            classes = list(record.metrics["classes"])
        if record.metrics.get("band_share") and not band_share:  # the ground truth's, the same for every row
            band_share = dict(record.metrics["band_share"])
            band_width_px = dict(record.metrics.get("band_width_px") or {})
        if "timing" in record.metrics:
            t = record.metrics["timing"]
            kind = t["environment"].get("gpu") or "CPU"
            timing.add(f"{kind}, {t['dtype']}, batch {t['batch']}, {t['input_size'][0]}x{t['input_size'][1]}, "
                       f"median of {t['iterations']} passes")
    records_used = list(latest.values())
    return SuiteResults(
        values={row: dict(metrics) for row, metrics in values.items()},
        class_iou=class_iou,
        seeds=sorted({r.seed for r in records_used}),
        devices=sorted({r.device or "?" for r in records_used}),
        data=sorted({r.data for r in records_used}),
        budget=records_used[-1].budget if records_used else budget,
        timing=sorted(timing),
        code={row: code_label(record) for (row, _), record in sorted(latest.items(), key=lambda item: item[0])},
        random_init=any("checkpoint" not in record.config and "backbone_weights" not in record.config for record in records_used),
        by_seed={row: dict(metrics) for row, metrics in by_seed.items()},
        record_ids={key: record.id for key, record in latest.items() if record.id is not None},
        class_iou_by_seed=dict(class_iou_by_seed),
        overrides=sorted({f"{key}={_override_text(value)}" for record in records_used
                          for part in (record.config or {}).get("overrides", {}).values() for key, value in part.items()}),
        band_share=band_share,
        band_width_px=band_width_px,
        classes=classes,
    )


def band_share_text(metric: str, results: SuiteResults) -> str:
    """"1 px, 21%" for a band metric: the width its band had on the evaluated maps (several: "1/2 px") and its share of
    the evaluated pixels; "" for the band mean or when not recorded."""
    source = METRICS[metric].source
    if len(source) != 1:
        return ""
    width = source[0].rsplit(".", 1)[-1]
    share = results.band_share.get(width)
    if share is None:
        return ""
    used = "/".join(str(w) for w in results.band_width_px.get(width, [])) or width
    return f"{used} px, {100 * share:.0f}%"


def _override_text(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _mean(values: list[float] | None, metric: str) -> float | None:
    shown = [display_value(metric, v) for v in (values or []) if not math.isnan(v)]
    return statistics.fmean(shown) if shown else None


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _significance(suite, keys: list[str], results: SuiteResults, baseline: str | None):
    """Per accuracy metric with per-image statistics: the significantly best row, and each row's bootstrap
    interval against `baseline` (reports.significance)."""
    runs = {key: results.runs(key) for key in keys if key in {r.row for r in suite.rows}}
    best: dict[str, str | None] = {}
    against: dict[str, dict[str, object]] = defaultdict(dict)
    for metric in suite.metrics:
        if not significance.supports(metric):
            continue
        best[metric] = significance.significantly_best(metric, runs)
        if baseline:
            for key in runs:
                if key != baseline:
                    against[key][metric] = significance.difference(metric, runs.get(baseline, []), runs[key])
    return best, against


def suite_table(suite, paper, results: SuiteResults, budget_note: str = "") -> Table:
    """The mirrored table of one suite (see the module docstring); `suite` is a bench.suites.Suite. A comparison
    suite (no paper) has no paper columns."""
    comparison = getattr(suite, "is_comparison", False)
    paper_rows = {row.key: row for row in paper.rows}
    labels = row_labels(paper.rows)
    run_rows = {row.row for row in suite.rows}
    keys = [row.key for row in paper.rows]  # every row of the paper's table, in its order
    headers = {column.key: column.display for column in paper.columns}
    has_backbone = any(row.backbone for row in paper.rows)
    cost_metrics = {m for m in suite.metrics if METRICS[m].evaluator in ("complexity", "speed")}
    accuracy_metrics = set(suite.metrics) - cost_metrics
    hidden = set() if results.accuracy_shown else accuracy_metrics  # no result: shown as "—"
    # accuracy no row has a value for, in a run that measured something (params / GMACs only): "—" with a footnote
    measured_something = any(results.values.values())
    unmeasured = {m for m in accuracy_metrics - hidden if measured_something and not any(results.values.get(key, {}).get(m) for key in keys)}
    gap_metrics = [m for m in suite.metrics if m in cost_metrics and METRICS[m].evaluator == "complexity"]
    timed_on = device_kind(results.devices)
    header = ["method"] + (["backbone"] if has_backbone else [])
    for metric in suite.metrics:
        name = headers.get(metric, metric)
        ours = f"{timed_on} {name}" if METRICS[metric].evaluator == "speed" and timed_on else name  # e.g. "CPU latency (ms)"
        if comparison:
            header += [ours]
        else:
            header += [f"{ours} ours", f"{name} paper"] + ([f"{name} gap"] if metric in gap_metrics else [])
    reference = suite.compare.get("reference")  # FaPN style: (reference - row) on every row
    baseline = suite.compare.get("baseline")  # SFNet / FPT style: (row - baseline), none on the baseline
    measured_means = {key: {m: _mean(results.values.get(key, {}).get(m), m) for m in suite.metrics} for key in keys}
    paper_values = {key: {m: paper_rows[key].values.get(m) for m in suite.metrics} for key in keys}
    significant, against = _significance(suite, keys, results, reference or baseline)
    # bold: only the significantly best accuracy (paired bootstrap over images against every other row); no bold
    # for accuracy a budget cannot measure (hidden), nor for params / GMACs / speed, which have no "best"
    best = {m: keys.index(significant[m]) if significant.get(m) and m not in hidden else None for m in suite.metrics}
    rows: list[list[Cell]] = []
    separators: set[int] = set()
    pair_after = {pair[1]: pair[0] for pair in suite.compare.get("pairs", [])}

    def dagger(key: str, metric: str) -> str:
        interval = against.get(key, {}).get(metric)
        return "†" if interval is not None and interval.defined and not interval.excludes_zero else ""

    for index, key in enumerate(keys):
        source = paper_rows[key]
        method = labels[key] if key in run_rows else f"{labels[key]} (paper only)"
        cells = [Cell(method)] + ([Cell(source.backbone or "")] if has_backbone else [])
        for metric in suite.metrics:
            measured = format_measured(metric, results.values.get(key, {}).get(metric, []))
            paper_value = paper_values[key][metric]
            paper_shown = paper_text(metric, paper_value)
            gap = [Cell(gap_text(measured_means[key][metric], paper_value))] if metric in gap_metrics else []
            if reference:
                measured += " " + signed(_difference(measured_means[reference][metric], measured_means[key][metric]), metric) + dagger(key, metric)
                paper_shown += " " + signed(_difference(paper_values[reference][metric], paper_value), metric)
            elif baseline and key != baseline:
                measured += " " + signed(_difference(measured_means[key][metric], measured_means[baseline][metric]), metric) + dagger(key, metric)
                paper_shown += " " + signed(_difference(paper_value, paper_values[baseline][metric]), metric)
            if metric in hidden and measured.strip() != "-" or metric in unmeasured:
                measured = NOT_A_RESULT
            cells.append(Cell(measured.strip(), bold=best[metric] == index))
            if not comparison:
                cells += [Cell(paper_shown.strip())] + gap
        rows.append(cells)
        if key in pair_after:
            base = pair_after[key]
            line = [Cell("improvement")] + ([Cell("")] if has_backbone else [])
            for metric in suite.metrics:
                ours = None if metric in hidden else _difference(measured_means[key][metric], measured_means[base][metric])
                line.append(Cell(signed(ours, metric)))
                if not comparison:
                    line.append(Cell(signed(_difference(paper_values[key][metric], paper_values[base][metric]), metric)))
                    line += [Cell("")] if metric in gap_metrics else []
            separators.add(len(rows))
            rows.append(line)
    band_metrics = [m for m in suite.metrics if METRICS[m].evaluator == "boundary"]
    if band_metrics and results.band_share and not hidden & set(band_metrics):
        # the ground truth's: which width each band had on the evaluated maps and how much of the image it holds
        line = [Cell("band: width used, share of evaluated pixels")] + ([Cell("")] if has_backbone else [])
        for metric in suite.metrics:
            line.append(Cell(band_share_text(metric, results) if metric in band_metrics else ""))
            if not comparison:
                line += [Cell("")] + ([Cell("")] if metric in gap_metrics else [])
        separators.add(len(rows))
        rows.append(line)
    seeds_note = "; mean±std over seeds" if len(results.seeds) > 1 else ""
    notes = [] if comparison else [
        f"Paper: {suite.paper} {suite.table} ({paper.caption})" if getattr(paper, "caption", "") else f"Paper: {suite.paper} {suite.table}"]
    counted_only = _measured_metrics(results) and all(METRICS[m].evaluator == "complexity" for m in _measured_metrics(results))
    if counted_only:  # the fidelity pass: no data, budget or seed went into these numbers
        notes.append(f"Ours: counted from the models' definitions (nothing trained or evaluated); "
                     f"device {', '.join(results.devices) or '-'}.")
    else:
        notes.append(
            f"Ours: data {', '.join(results.data) or 'none yet'}; budget {results.budget or '-'}"
            + (f" ({budget_note})" if budget_note else "")
            + f"; device {', '.join(results.devices) or '-'}; seeds {', '.join(map(str, results.seeds)) or '-'}"
            + seeds_note
            + (f"; overrides --set {', '.join(results.overrides)}" if results.overrides else "")
            + (". Bold: significantly best accuracy (see below)." if accuracy_metrics - hidden - unmeasured else ".")
        )
    if hidden & set(suite.metrics):
        notes.append(HIDDEN_ACCURACY_FOOTNOTE.format(budget=results.budget))
    if unmeasured:
        notes.append(NOT_MEASURED_FOOTNOTE)
    if gap_metrics and not comparison:
        notes.append(GAP_FOOTNOTE)
    if reference:
        notes.append(f"Parentheses: {paper_rows[reference].method} minus the row" + ("" if comparison else ", as the paper prints them") + ".")
    if baseline:
        gain = "" if comparison else " (the paper's gain over its baseline)"
        notes.append(f"Parentheses: the row minus {paper_rows[baseline].method}{gain}.")
    if (reference or baseline) and any(significance.supports(m) for m in accuracy_metrics - hidden - unmeasured):
        images = next((len(run[0]["index"]) for run in (results.runs(k) for k in keys) if run), "?")
        notes.append(significance.METHOD_FOOTNOTE.format(baseline=paper_rows[reference or baseline].method, images=images))
    if band_metrics:
        notes.append(BOUNDARY_FOOTNOTE)
        wide = [f"{width} px ({band_caveat(share)})" for width, share in results.band_share.items() if band_caveat(share)]
        if wide:
            notes.append("Bands " + "; ".join(wide) + ".")
        same: dict[tuple, list[str]] = defaultdict(list)  # bands that became one band on these maps
        for width, used in results.band_width_px.items():
            same[tuple(used)].append(f"{width}")
        merged = [f"{', '.join(widths)} px are all {'/'.join(map(str, used))} px" for used, widths in same.items() if len(widths) > 1]
        if merged:
            notes.append("On these maps the scaled band widths coincide: " + "; ".join(merged) + ", so their columns are one band.")
    if "gflops" in suite.metrics:
        notes.append(MAC_FOOTNOTE)
    if results.timing:
        notes.append("Speed: " + "; ".join(results.timing) + ".")
    if results.budget == "paper" and results.random_init:
        notes.append(RANDOM_INIT_FOOTNOTE)
    if results.code:
        by_code: dict[str, list[str]] = defaultdict(list)
        for row in [key for key in keys if key in results.code]:  # the paper's row order
            by_code[results.code[row]].append(paper_rows[row].method)
        notes.append("Code: " + "; ".join(f"{', '.join(rows)}: {label}" for label, rows in by_code.items()) + ".")
    return Table(title=suite.title, header=header, rows=rows, footnotes=notes, separators=separators)


def difference_table(suite, paper, results: SuiteResults) -> Table | None:
    """Each measured row minus the suite's baseline (or reference) row: the paired bootstrap interval over
    images and, over seeds, the mean difference with its t-interval (reports.significance); None without a
    baseline or measured rows."""
    base = suite.compare.get("reference") or suite.compare.get("baseline")
    paper_rows = {row.key: row for row in paper.rows}
    measured = [row.row for row in suite.rows if row.row in results.values and row.row != base]
    if not base or base not in results.values or not measured:
        return None
    metrics = [m for m in suite.metrics if METRICS[m].evaluator not in ("complexity", "speed")]
    if not metrics:
        return None
    header = ["method"]
    for metric in metrics:
        header += [f"Δ {METRICS[metric].label} (images, 95%)", f"Δ {METRICS[metric].label} (seeds, 95% t)"]
    rows = []
    base_runs = results.runs(base)
    for key in measured:
        cells = [Cell(paper_rows[key].method)]
        for metric in metrics:
            digits = METRICS[metric].digits
            interval = significance.difference(metric, base_runs, results.runs(key))
            over_seeds = significance.seed_interval(results.by_seed.get(base, {}).get(metric, {}),
                                                    results.by_seed.get(key, {}).get(metric, {}), metric)
            cells += [Cell(significance.interval_text(interval, digits)), Cell(significance.interval_text(over_seeds, digits))]
        rows.append(cells)
    notes = [f"Row minus {paper_rows[base].method}, in points. Images: paired bootstrap percentile interval (1000 resamples, "
             "generator seed 0); seeds: mean of the per-seed differences with its Student-t interval (needs 2+ seeds). "
             "†: the interval includes zero; '-': no per-image statistics stored for this metric (e.g. APs, SQ, iIoU)."]
    return Table(title=f"{suite.title}: differences to {paper_rows[base].method}", header=header, rows=rows, footnotes=notes)


def class_iou_table(suite, paper, results: SuiteResults) -> Table | None:
    """Per-class IoU (%) of each measured semantic row (mean over seeds), classes as columns in the dataset's order."""
    keys = [row.row for row in suite.rows if results.class_iou_by_seed.get(row.row)]
    if not keys:
        return None
    paper_rows = {row.key: row for row in paper.rows}
    classes = results.class_order(next(iter(results.class_iou_by_seed[keys[0]].values())))
    rows = []
    for key in keys:
        per_seed = results.class_iou_by_seed[key].values()
        cells = [Cell(paper_rows[key].method)]
        for name in classes:
            values = [v[name] for v in per_seed if v.get(name) is not None and not math.isnan(v[name])]
            cells.append(Cell(f"{100 * statistics.fmean(values):.1f}" if values else "-"))
        rows.append(cells)
    return Table(title=f"{suite.title}: per-class IoU (%)", header=["method", *classes], rows=rows,
                 footnotes=["Class IoU on the evaluation images (cityscapesscripts' definition, on the dataset's classes), mean over seeds."])


def device_kind(devices: Sequence[str]) -> str:
    """"CPU" or "GPU" when every record was measured on that kind of device ("cpu", "cuda:0"), else ""."""
    if devices and all(device.startswith("cpu") for device in devices):
        return "CPU"
    if devices and all(device.startswith("cuda") for device in devices):
        return "GPU"
    return ""


def row_labels(rows) -> dict[str, str]:
    """Each paper row's method as the report names it: with its framework where the table states one
    (FaPN Table 6: PanopticFPN / PanopticFCN), and with its input size where rows would read alike
    (FaPN Table 8(a): two FaPN R18 rows at 512x1024 and 768x1536)."""
    labels = {row.key: f"{row.method} ({row.framework})" if row.framework else row.method for row in rows}
    alike = defaultdict(list)
    for row in rows:
        alike[(labels[row.key], row.backbone)].append(row)
    for group in alike.values():
        if len(group) > 1:
            for row in group:
                if row.input_size:
                    labels[row.key] += f" {row.input_size[0]}x{row.input_size[1]}"
    return labels


def gap_text(measured: float | None, paper: float | None) -> str:
    """(ours - paper) / paper in percent, flagged with ⚑ over GAP_LIMIT_PERCENT."""
    if measured is None or paper is None or paper == 0:
        return "-"
    percent = 100.0 * (measured - paper) / paper
    text = f"{percent:+.1f}%"
    return f"{text} ⚑" if abs(percent) > GAP_LIMIT_PERCENT else text


# --- figures ---------------------------------------------------------------------------------------------


def _save(figure, directory: Path, name: str, pdf: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    png = directory / f"{name}.png"
    figure.savefig(png, dpi=120, bbox_inches="tight")
    if pdf:
        figure.savefig(directory / f"{name}.pdf", bbox_inches="tight")
    plt.close(figure)
    return png


def band_figure(suite, paper, results: SuiteResults, directory: Path) -> Path | None:
    """Boundary-band mIoU (IoU within n px of a boundary, averaged over classes) against band width n, one
    line per row (FaPN Table 2 as a plot); ours only under a budget that measures accuracy."""
    widths = [w for w in (3, 5, 8, 12) if f"band_{w}" in suite.metrics]
    if not widths:
        return None
    paper_rows = {row.key: row for row in paper.rows}
    labels = row_labels(paper.rows)
    figure, axis = plt.subplots(figsize=(6, 4))
    for index, row in enumerate(suite.rows):
        colour = f"C{index}"
        label = f"{labels[row.row]} {paper_rows[row.row].backbone or ''}".strip()
        measured = [_mean(results.values.get(row.row, {}).get(f"band_{w}"), f"band_{w}") for w in widths]
        if results.accuracy_shown and all(v is not None for v in measured):
            axis.plot(widths, measured, "o-", color=colour, label=f"{label} (ours)")
        published = [paper_rows[row.row].values.get(f"band_{w}") for w in widths]
        if all(v is not None for v in published):
            axis.plot(widths, published, "s--", color=colour, alpha=0.6, label=f"{label} (paper)")
    if not axis.lines:  # nothing measured and no paper curve: no figure
        plt.close(figure)
        return None
    axis.set_xlabel("band width (px)")
    axis.set_ylabel("boundary-band mIoU (%)")
    axis.set_xticks(widths)
    axis.set_title(suite.title)
    axis.legend(fontsize=7)
    return _save(figure, directory, f"{suite.name}_bands")


def speed_figure(suite, paper, results: SuiteResults, directory: Path) -> Path | None:
    """Speed against accuracy (SFNet Fig. 1 style) in two panels with their own speed axes: ours, labelled
    with the device it was timed on, and the paper's GPU FPS. A CPU timing never shares an axis with a
    GPU one; our accuracy appears only under a budget that measures it."""
    accuracy = next((m for m in suite.metrics if METRICS[m].evaluator in ("semantic", "coco", "panoptic")), None)
    if "fps" not in suite.metrics or accuracy is None:
        return None
    figure, (ours_axis, paper_axis) = plt.subplots(1, 2, figsize=(11, 4))
    labels = row_labels(paper.rows)
    for index, row in enumerate(paper.rows):
        label = f"{labels[row.key]} {row.backbone or ''}".strip()
        fps = _mean(results.values.get(row.key, {}).get("fps"), "fps")
        score = _mean(results.values.get(row.key, {}).get(accuracy), accuracy) if results.accuracy_shown else None
        if fps is not None:
            ours_axis.scatter([fps], [score if score is not None else 0.0], color=f"C{index}", label=label,
                              marker="o" if score is not None else "|")
        paper_fps, paper_score = row.values.get("fps"), row.values.get(accuracy)
        if paper_fps is not None and paper_score is not None:
            paper_axis.scatter([paper_fps], [paper_score], facecolors="none", edgecolors=f"C{index}", label=label)
    device = ", ".join(results.devices) or "-"
    ours_axis.set_xlabel(f"our speed on {device} (FPS)")
    ours_axis.set_ylabel(f"our {METRICS[accuracy].label} ({METRICS[accuracy].unit})" if results.accuracy_shown
                         else f"{METRICS[accuracy].label}: not measured under the {results.budget} budget")
    ours_axis.set_title("ours")
    paper_axis.set_xlabel("paper's speed on its GPU (FPS)")
    paper_axis.set_ylabel(f"paper's {METRICS[accuracy].label} ({METRICS[accuracy].unit})")
    paper_axis.set_title("paper")
    for axis in (ours_axis, paper_axis):
        if axis.collections:
            axis.legend(fontsize=7)
    figure.suptitle(suite.title)
    return _save(figure, directory, f"{suite.name}_speed")


def compared_pair(suite) -> tuple[str, str] | None:
    """(baseline row, proposed row) of a suite: its first `pairs` entry, else its `baseline` and the row after
    it, else the rows other than its `reference` and the reference (FaPN style), else its first two rows."""
    rows = [row.row for row in suite.rows]
    if suite.compare.get("pairs"):
        return tuple(suite.compare["pairs"][0])
    if suite.compare.get("baseline") in rows and len(rows) >= 2:
        base = suite.compare["baseline"]
        return base, next(r for r in rows if r != base)
    if suite.compare.get("reference") in rows and len(rows) >= 2:
        ours = suite.compare["reference"]
        return next(r for r in rows if r != ours), ours
    return (rows[0], rows[1]) if len(rows) >= 2 else None


def class_figure(suite, paper, results: SuiteResults, directory: Path) -> Path | None:
    """Per-class IoU bars of the suite's baseline and its proposed method, in Cityscapes class order
    (train id); none under a budget that says nothing about accuracy."""
    pair = compared_pair(suite)
    if not results.accuracy_shown or pair is None or not all(key in results.class_iou for key in pair):
        return None
    labels = row_labels(paper.rows)
    paper_rows = {row.key: row for row in paper.rows}
    classes = results.class_order(set(results.class_iou[pair[0]]) | set(results.class_iou[pair[1]]))
    figure, axis = plt.subplots(figsize=(10, 3.5))
    positions = np.arange(len(classes))
    for offset, key, role in ((-0.2, pair[0], "baseline"), (0.2, pair[1], "proposed")):
        values = [100 * (results.class_iou[key].get(c) or 0.0) for c in classes]
        name = f"{labels[key]} {paper_rows[key].backbone or ''}".strip()
        axis.bar(positions + offset, values, width=0.4, label=f"{name} ({role})")
    axis.set_xticks(positions, classes, rotation=60, ha="right", fontsize=8)
    axis.set_ylabel("IoU (%)")
    axis.set_title(f"{suite.title}: per-class IoU (first seed)")
    axis.legend(fontsize=8)
    return _save(figure, directory, f"{suite.name}_classes")


def confusion_figures(suite, paper, results: SuiteResults) -> list:
    """One figure maker per semantic row with stored statistics: its confusion matrix (first seed)."""
    makers = []
    for row in suite.rows:
        stored = results.statistics.get(row.row, {})
        first = stored[min(stored)] if stored else None
        if first is not None and "confusion" in first:
            makers.append(partial(_confusion_figure, row.row, first))
    return makers


def _confusion_figure(key: str, stored: dict, suite, paper, results: SuiteResults, directory: Path) -> Path:
    method = next((row.method for row in paper.rows if row.key == key), key)
    figure = confusion_figure(stored["confusion"], [str(name) for name in stored["classes"]],
                              title=f"{suite.title}: {method} (seed {min(results.statistics[key])})")
    return _save(figure, directory, f"{suite.name}_{key}_confusion", pdf=False)  # one per row: PNG only, to keep reports fast


# --- writing ---------------------------------------------------------------------------------------------


_HTML_STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border-bottom:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}tr.improvement td{color:#555;font-style:italic}
.footnote{font-size:12px;color:#444;margin:0.2em 0}img{max-width:100%;margin:0.5em 0}"""


def report_summary(sections: Sequence[tuple]) -> list[str]:
    """What the report holds, in a few lines for its top: what was run (each comparison suite's rows, seeds, data
    and budget; the fidelity pass over the paper tables), on what data and devices, and what its accuracy
    numbers can and cannot say. `verdict_tables` follow it: which claims held with 95% confidence."""
    measured = [(suite, paper, results) for suite, paper, results, _ in sections if results.values]
    if not measured:
        return ["No results in the store yet: every table shows the papers' numbers only."]
    budgets = sorted({results.budget for _, _, results in measured if results.budget})
    data = sorted({d for _, _, results in measured for d in results.data})
    devices = sorted({d for _, _, results in measured for d in results.devices})
    seeds = sorted({s for _, _, results in measured for s in results.seeds})
    lines = [f"Run: {len(measured)} of {len(sections)} suites have results; budget {', '.join(budgets)}; "
             f"data {', '.join(data)}; devices {', '.join(devices)}; seeds {', '.join(map(str, seeds))}."]
    for suite, paper, results in measured:
        if getattr(suite, "is_comparison", False):
            labels = row_labels(paper.rows)
            rows = ", ".join(f"{labels[row.row]} (`{row.model}`)" for row in suite.rows if row.row in results.values)
            lines.append(f"{suite.title}: {rows}; seeds {', '.join(map(str, results.seeds))}; data {', '.join(results.data)}; "
                         f"budget {results.budget}" + (f" with --set {', '.join(results.overrides)}" if results.overrides else "")
                         + f"; device {', '.join(results.devices)}. Claims against the baseline: "
                         + ("the table below." if results.accuracy_shown else
                            f"none (accuracy under the {results.budget} budget is no result)."))
    fidelity = [(suite, paper, results) for suite, paper, results in measured if not getattr(suite, "is_comparison", False)
                and _measured_metrics(results) and all(METRICS[m].evaluator == "complexity" for m in _measured_metrics(results))]
    if fidelity:
        rows = sum(len(results.values) for _, _, results in fidelity)
        flagged = sum(_flagged_rows(suite, paper, results) for suite, paper, results in fidelity)
        lines.append(f"Fidelity pass: {rows} paper rows of {len(fidelity)} paper tables, params / GMACs counted from the models' "
                     f"definitions (no training, no accuracy, no speed) beside the papers' figures; {flagged} of these rows "
                     f"differ from the paper by over {GAP_LIMIT_PERCENT:g}% (⚑, explained in docs/fidelity.md).")
    hidden = [suite.name for suite, _, results in measured if not results.accuracy_shown]
    if hidden:
        lines.append(f"Accuracy: {len(hidden)} suites were run under a budget that says nothing about accuracy; their "
                     "accuracy cells show — and only their params, GMACs and latency are results.")
    if any(device.startswith("cpu") for device in devices):
        lines.append("Speed: measured latency on a CPU is shown as CPU latency, never beside the papers' GPU FPS.")
    lines.append("Paper numbers are the papers' own (reports/paper); params / GMACs gaps over 5% are flagged ⚑ "
                 "and explained in docs/fidelity.md.")
    return lines


def _measured_metrics(results: SuiteResults) -> set[str]:
    """The vocabulary keys some row of `results` has a value for."""
    return {metric for metrics in results.values.values() for metric, values in metrics.items() if values and metric in METRICS}


def _flagged_rows(suite, paper, results: SuiteResults) -> int:
    """Measured rows of a paper suite with a params / GMACs gap to the paper over GAP_LIMIT_PERCENT."""
    paper_rows = {row.key: row for row in paper.rows}
    counted = [m for m in suite.metrics if METRICS[m].evaluator == "complexity"]
    return sum(any(gap_text(_mean(results.values[key].get(m), m), paper_rows[key].values.get(m)).endswith("⚑") for m in counted)
               for key in results.values if key in paper_rows)


def verdict_tables(sections: Sequence[tuple]) -> list[Table]:
    """Per comparison suite measured under a budget whose accuracy is a result: does each row beat the baseline,
    per accuracy metric (mIoU, each boundary band), with 95% confidence? "yes", "no (interval crosses 0)" or
    "worse", from the paired bootstrap over the evaluation images (reports.significance, seeds averaged), whatever
    the answer."""
    tables = []
    for suite, paper, results, _ in sections:
        base = suite.compare.get("baseline")
        if not getattr(suite, "is_comparison", False) or not results.accuracy_shown or base not in results.values:
            continue
        metrics = [m for m in suite.metrics if significance.supports(m)]
        others = [row.row for row in suite.rows if row.row != base and row.row in results.values]
        if not metrics or not others:
            continue
        labels = row_labels(paper.rows)
        rows = []
        for key in others:
            cells = [Cell(labels[key])]
            for metric in metrics:
                interval = significance.difference(metric, results.runs(base), results.runs(key))
                answer = significance.verdict(metric, interval)
                shown = significance.interval_text(interval, METRICS[metric].digits).rstrip("†")
                text = answer if answer == "not measured" else f"{answer}: {shown}"
                over_seeds = significance.seed_interval(results.by_seed.get(base, {}).get(metric, {}),
                                                        results.by_seed.get(key, {}).get(metric, {}), metric)
                if over_seeds is not None and over_seeds.defined and answer != "not measured":
                    seeds_answer = significance.verdict(metric, over_seeds)
                    text += f"; over seeds {seeds_answer}: {significance.interval_text(over_seeds, METRICS[metric].digits).rstrip('†')}"
                cells.append(Cell(text))
            rows.append(cells)
        images = next((len(run[0]["index"]) for run in (results.runs(k) for k in [base, *others]) if run), "?")
        notes = [f"Row minus {labels[base]} in points, 95% paired bootstrap interval over the {images} evaluation images "
                 f"(1000 resamples, each scoring the mean over seeds {', '.join(map(str, results.seeds))}). yes: the whole "
                 "interval is above 0; worse: below 0; no: it crosses 0. The bootstrap holds the trained models fixed; "
                 "'over seeds' asks the same of the per-seed differences (mean with its Student-t 95% interval), which "
                 "covers training randomness but is wide with few seeds. A claim holds with confidence when both say yes."]
        tables.append(Table(title=f"{suite.name}: does each row beat {labels[base]} with 95% confidence?",
                            header=["row", *(METRICS[m].label for m in metrics)], rows=rows, footnotes=notes))
    return tables


def render_report(
    sections: Sequence[tuple], out_dir: Path, title_note: str, formats: Sequence[str] = ("md", "tex", "html")
) -> dict[str, Path]:
    """Write report.md / .tex / .html (figures under figures/, embedded in the HTML) from
    (suite, paper table, SuiteResults, budget note) sections; returns the written paths."""
    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    figures_dir = out_dir / "figures"
    summary = report_summary(sections)
    verdicts = verdict_tables(sections)
    markdown = [f"# alignbench report\n\n{title_note}\n", "## Summary\n", *[f"- {line}" for line in summary], "",
                *[to_markdown(table) for table in verdicts]]
    latex = [r"% alignbench report: \usepackage{booktabs}" + "\n", *[to_latex(table) for table in verdicts]]
    contents_list = "".join(f'<li><a href="#{html_anchor(suite.title)}">{html_text(suite.title)}</a></li>'
                            for suite, *_ in sections)
    html_parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>alignbench report</title><style>{_HTML_STYLE}</style></head><body>",
                  f"<h1>alignbench report</h1><p>{html_text(title_note)}</p>",
                  "<h2>Summary</h2><ul>" + "".join(f"<li>{html_text(line)}</li>" for line in summary) + "</ul>",
                  *[to_html(table) for table in verdicts],
                  f"<h2>Contents</h2><ol>{contents_list}</ol>"]
    for suite, paper, results, budget_note in sections:
        tables = [suite_table(suite, paper, results, budget_note)]
        if results.accuracy_shown:  # intervals and per-class scores of a budget that cannot learn are no result
            tables += [difference_table(suite, paper, results), class_iou_table(suite, paper, results)]
        for table in tables:
            if table is None:
                continue
            markdown.append(to_markdown(table))
            latex.append(to_latex(table))
            html_parts.append(to_html(table))
        for make in (band_figure, speed_figure, class_figure, *confusion_figures(suite, paper, results)):
            try:
                figure = make(suite, paper, results, figures_dir)
            except (ValueError, KeyError) as error:  # a figure must never stop the report
                log.warning("%s: figure %s skipped (%s)", suite.name, getattr(make, "__name__", "confusion"), error)
                figure = None
            if figure is not None:
                relative = figure.relative_to(out_dir).as_posix()
                markdown.append(f"![{figure.stem}]({relative})\n")
                encoded = base64.b64encode(figure.read_bytes()).decode()
                html_parts.append(f'<img alt="{figure.stem}" src="data:image/png;base64,{encoded}">')
    html_parts.append("</body></html>")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    contents = {"md": "\n".join(markdown), "tex": "\n".join(latex), "html": "\n".join(html_parts)}
    for kind in formats:
        path = out_dir / f"report.{kind}"
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(contents[kind], encoding="utf-8")
        temporary.replace(path)
        written[kind] = path
    return written
