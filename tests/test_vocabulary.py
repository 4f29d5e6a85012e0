"""The metric vocabulary: every key the suites, the papers' numbers and the tables use is defined there once,
and the evaluators' JSON outputs map onto it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alignbench.metrics import vocabulary
from alignbench.metrics.vocabulary import METRICS


def test_every_key_of_the_suites_paper_files_and_tables_is_in_the_vocabulary():
    from alignbench.bench.suites import load_suites
    from alignbench.reports.paper import VALUE_KEYS, list_tables, paper_table

    suite_keys = {metric for suite in load_suites() for metric in suite.metrics}
    paper_keys = {column.key for paper, table in list_tables() for column in paper_table(paper, table).columns}
    assert suite_keys and paper_keys
    assert suite_keys <= set(METRICS), suite_keys - set(METRICS)
    assert paper_keys <= set(METRICS), paper_keys - set(METRICS)
    assert VALUE_KEYS == frozenset(METRICS)  # the paper files accept exactly the vocabulary
    for suite in load_suites():  # and a suite measures only what its task's evaluators produce
        assert set(suite.metrics) <= set(vocabulary.task_metrics(suite.task)), suite.name


def test_entries_are_consistent():
    for key, entry in METRICS.items():
        assert entry.key == key
        assert entry.evaluator in (*vocabulary.EVALUATORS, None)
        assert bool(entry.tasks) == entry.measured == bool(entry.source), key
        assert set(entry.tasks) <= set(vocabulary.TASKS)
    assert not METRICS["params_m"].higher_is_better and METRICS["mIoU"].higher_is_better
    assert METRICS["mIoU"].fraction and not METRICS["fps"].fraction
    with pytest.raises(KeyError, match="unknown metric 'IoU_category'"):
        vocabulary.metric("IoU_category")  # the evaluator's JSON spelling is not a vocabulary key


def test_the_tables_read_the_vocabulary():
    from alignbench.reports.tables import best_index, display_value, format_measured, paper_text

    assert display_value("mIoU", 0.5) == 50.0 and display_value("params_m", 12.5) == 12.5
    assert format_measured("params_m", [12.3456]) == "12.35" and format_measured("IoU_cat", [0.8]) == "80.0"
    assert best_index("latency_ms", [3.0, 1.0, 2.0]) == 1 and best_index("PQ", [0.3, 0.1, 0.2]) == 0
    assert paper_text("fps", 26.0) == "26" and paper_text("mIoU", 79) == "79.0" and paper_text("mIoU", None) == "-"


def test_semantic_json_contract_maps_onto_vocabulary_keys(small_tree):
    """`alignbench eval semantic`'s JSON (IoU_category, boundary_mIoU by width) -> IoU_cat, band_3, ..."""
    from alignbench.bench.data.cityscapes import find_frames, read_frame
    from alignbench.bench.tasks import semantic_metrics
    from alignbench.metrics.semantic import SemanticAccumulator

    accumulator = SemanticAccumulator(bands=(3, 5, 8, 12), pred_ids="train")
    for frame in find_frames(small_tree, "val"):
        sample = read_frame(frame, with_image=False)
        prediction = np.roll(sample.train_ids, 2, axis=1)
        prediction[prediction == 255] = 0
        accumulator.update(prediction, sample.label_ids, sample.instance_ids)
    result = accumulator.compute()
    output = result.to_json()
    assert {"IoU_category", "iIoU_category", "boundary_mIoU"} <= set(output)  # the public contract, unchanged
    metrics = semantic_metrics(result)
    assert set(metrics) == set(vocabulary.task_metrics("semantic")) - {"params_m", "gflops", "fps", "latency_ms"} | {"class_IoU", "classes", "band_share", "band_width_px", "n_images"}
    assert metrics["mIoU"] == metrics["mIoU_val"] == result.miou
    assert metrics["IoU_cat"] == result.iou_category and metrics["iIoU_cat"] == result.iiou_category
    assert [metrics[f"band_{w}"] for w in (3, 5, 8, 12)] == [result.boundary_miou[w] for w in (3, 5, 8, 12)]
    assert math.isclose(metrics["band_mean"], sum(result.boundary_miou.values()) / 4)
    assert metrics["n_images"] == 4 and 0.0 < metrics["mIoU"] < 1.0


def test_extract_reads_sources_and_undefined_scores():
    outputs = {
        "coco": {"bbox": {"AP": 0.25, "APs": None}, "segm": {"AP": 0.5}},
        "panoptic": {"All": {"pq": 0.4, "sq": 0.8, "rq": 0.5}, "Things": {"pq": 0.3}, "Stuff": {"pq": float("nan")}},
        "boundary": {"boundary_mIoU": {"3": 0.2, "5": None, "8": 0.4, "12": float("nan")}},
    }
    values = vocabulary.extract(outputs, ["AP_bbox", "APs_bbox", "AP_segm", "PQ", "PQ_th", "PQ_st", "band_3", "band_5", "band_mean", "mIoU"])
    assert values["AP_bbox"] == 0.25 and values["AP_segm"] == 0.5 and values["PQ"] == 0.4 and values["PQ_th"] == 0.3
    assert math.isnan(values["APs_bbox"]) and math.isnan(values["PQ_st"]) and math.isnan(values["band_5"])
    assert values["band_mean"] == pytest.approx(0.3)  # the mean of the finite bands
    assert "mIoU" not in values  # no semantic output given
