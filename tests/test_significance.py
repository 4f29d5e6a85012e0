"""Report significance (reports.significance): intervals against the baseline, significance-only bold,
daggers, and COCO matches stored as arrays."""

from __future__ import annotations

import numpy as np
import pytest

from alignbench.metrics import statistics as stats
from alignbench.metrics.coco import evaluate_coco
from alignbench.reports import significance


def _semantic_run(rng, tp_rate: float, images: int = 30, classes: int = 4) -> dict:
    """Per-image (TP, FP, FN) with a given share of each class's pixels right, for 1 + 1 band planes."""
    pixels = rng.integers(50, 100, size=(images, 2, classes))
    tp = np.round(pixels * tp_rate).astype(np.int64)
    wrong = pixels - tp
    counts = np.stack([tp, wrong, wrong], axis=-1)
    return {"kind": np.array("semantic"), "index": np.arange(images), "counts": counts, "bands": np.array([3])}


def test_difference_matches_a_direct_computation_and_bold_needs_significance():
    rng = np.random.default_rng(0)
    worse, better = _semantic_run(rng, 0.5), _semantic_run(rng, 0.8)
    interval = significance.difference("mIoU", [worse], [better])
    direct = stats.mean_iou(better["counts"][:, 0].sum(0)) - stats.mean_iou(worse["counts"][:, 0].sum(0))
    assert interval.estimate == pytest.approx(100 * direct)
    assert interval.low > 0 and interval.excludes_zero
    assert significance.significantly_best("mIoU", {"a": [worse], "b": [better]}) == "b"
    assert significance.significantly_best("band_3", {"a": [worse], "b": [better]}) == "b"
    # identical rows: a zero difference, not significant, nobody bold, and the text carries the dagger
    same = significance.difference("mIoU", [worse], [worse])
    assert same.estimate == 0 and not same.excludes_zero
    assert significance.significantly_best("mIoU", {"a": [worse], "b": [worse]}) is None
    assert significance.interval_text(same, 1).endswith("]†")
    assert not significance.interval_text(interval, 1).endswith("†")
    # a row without statistics: no interval, no bold for anybody
    assert significance.difference("mIoU", [worse], []) is None
    assert significance.significantly_best("mIoU", {"a": [worse], "b": []}) is None
    assert significance.difference("band_5", [worse], [better]) is None  # band not evaluated


def test_seed_interval_is_the_t_interval_of_paired_differences():
    interval = significance.seed_interval({0: 0.50, 1: 0.52, 2: 0.51}, {0: 0.55, 1: 0.56, 2: 0.58}, "mIoU")
    expected = stats.t_interval([5.0, 4.0, 7.0])
    assert interval.estimate == pytest.approx(expected.estimate) and interval.low == pytest.approx(expected.low)
    assert significance.seed_interval({0: 0.5}, {1: 0.6}, "mIoU") is None


def _coco_case(score_shift: float):
    images = [{"id": i, "width": 100, "height": 100} for i in range(6)]
    annotations = [{"id": i + 1, "image_id": i, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0}
                   for i in range(6)]
    ground_truth = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}
    detections = [{"image_id": i, "category_id": 1, "bbox": [10 + (i % 3) * score_shift, 10, 30, 30], "score": 0.9 - 0.1 * i}
                  for i in range(6)]
    return evaluate_coco(ground_truth, detections, "bbox", keep_matches=True)


def test_coco_matches_survive_the_npz_arrays_and_give_cocoeval_ap():
    result = _coco_case(6.0)
    arrays = stats.matches_to_arrays(result.matches, "bbox_")
    restored = stats.matches_from_arrays(arrays, "bbox_")
    ap = stats.coco_average_precision(restored, np.ones((1, 6)))[0]
    assert ap == pytest.approx(result.stats[0])
    assert stats.coco_average_precision(restored, np.ones((1, 6)), iou=0.5)[0] == pytest.approx(result.stats[1])
    baseline = [{"kind": np.array("coco"), "index": np.arange(6), **arrays}]
    better = [{"kind": np.array("coco"), "index": np.arange(6), **stats.matches_to_arrays(_coco_case(0.0).matches, "bbox_")}]
    interval = significance.difference("AP_bbox", baseline, better)
    assert interval.estimate == pytest.approx(100 * (_coco_case(0.0).stats[0] - result.stats[0]))
    assert significance.difference("APs_bbox", baseline, better) is None  # no per-area matches stored


def test_report_table_bolds_only_the_significantly_best_and_marks_the_rest():
    from types import SimpleNamespace

    from alignbench.reports.paper import PaperColumn, PaperRow, PaperTable
    from alignbench.reports.report import SuiteResults, difference_table, suite_table

    rng = np.random.default_rng(1)
    runs = {"base": _semantic_run(rng, 0.5), "good": _semantic_run(rng, 0.8), "same": None}
    runs["same"] = {**runs["base"]}
    values = {key: {"mIoU": [float(stats.mean_iou(run["counts"][:, 0].sum(0)))]} for key, run in runs.items()}
    results = SuiteResults(values=values, class_iou={}, seeds=[0], devices=["cpu"], data=["synthetic"], budget="smoke", timing=[],
                           by_seed={k: {"mIoU": {0: v["mIoU"][0]}} for k, v in values.items()},
                           record_ids={(k, 0): i for i, k in enumerate(runs)}, statistics={k: {0: run} for k, run in runs.items()})
    rows = tuple(PaperRow(key=k, method=k.upper(), backbone=None, input_size=None, ours=False, text="", values={}) for k in runs)
    paper = PaperTable(paper="", id="t", caption="t", dataset="", columns=(PaperColumn("mIoU", "mIoU"),), rows=rows, source="")
    suite = SimpleNamespace(is_comparison=True, title="T", metrics=("mIoU",), compare={"baseline": "base"},
                            rows=tuple(SimpleNamespace(row=k) for k in runs))
    table = suite_table(suite, paper, results)
    cells = {row[0].text: row[1] for row in table.rows}
    assert cells["GOOD"].bold and not cells["BASE"].bold and not cells["SAME"].bold
    assert cells["SAME"].text.endswith("†") and not cells["GOOD"].text.endswith("†")
    assert table.header == ["method", "mIoU"]  # no paper columns
    assert any("paired bootstrap" in note for note in table.footnotes)
    differences = difference_table(suite, paper, results)
    assert [row[0].text for row in differences.rows] == ["GOOD", "SAME"]
    assert differences.rows[0][1].text.startswith("+") and "[" in differences.rows[0][1].text
