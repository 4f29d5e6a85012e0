"""COCO AP: equal to pycocotools' COCOeval run by hand, input validation, helpers."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from alignbench.bench.perf import synthetic_coco_ground_truth, synthetic_detections
from alignbench.metrics.coco import (
    CocoResult,
    InvalidCocoError,
    decode_segmentation,
    detections_to_coco,
    encode_mask,
    evaluate_coco,
)


@pytest.fixture(scope="module")
def gt():
    return synthetic_coco_ground_truth(4, (96, 192), density=1.5, seed=3)


@pytest.fixture(scope="module")
def detections(gt):
    return synthetic_detections(gt, np.random.default_rng(11))


def _pycocotools_stats(gt: dict, detections: list, iou_type: str) -> list[float]:
    """COCOeval exactly as its README runs it, on deep copies."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(detections)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(s) for s in evaluator.stats]


def test_data_has_crowds_misses_duplicates_and_false_positives(gt, detections):
    assert sum(a["iscrowd"] for a in gt["annotations"]) >= 4
    assert len(detections) > len(gt["annotations"])  # duplicates and false positives outnumber the misses
    scores = [d["score"] for d in detections]
    assert len(set(scores)) == len(scores)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_stats_equal_pycocotools_exactly(gt, detections, iou_type):
    result = evaluate_coco(gt, detections, iou_type)
    expected = _pycocotools_stats(gt, detections, iou_type)
    assert list(result.stats) == expected
    metrics = result.metrics
    assert list(metrics) == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    for value, stat in zip(metrics.values(), expected[:6]):
        assert (np.isnan(value) and stat == -1) or value == stat
    assert 0.05 < metrics["AP"] < metrics["AP50"] < 1.0
    assert result.n_images == 4 and result.n_detections == len(detections)


def test_inputs_are_not_modified(gt, detections):
    before_gt, before_detections = copy.deepcopy(gt), copy.deepcopy(detections)
    evaluate_coco(gt, detections, "segm")
    evaluate_coco(gt, detections, "bbox")
    assert gt == before_gt and detections == before_detections


def test_perfect_and_empty_detections(gt):
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0,
         "segmentation": a["segmentation"]}
        for a in gt["annotations"] if not a["iscrowd"]
    ]
    for iou_type in ("bbox", "segm"):
        result = evaluate_coco(gt, perfect, iou_type)
        assert result.metrics["AP"] == pytest.approx(1.0) and result.metrics["AP50"] == pytest.approx(1.0)
        empty = evaluate_coco(gt, [], iou_type)
        assert empty.metrics["AP"] == 0.0 and empty.n_detections == 0


def test_pycocotools_object_accepted(gt, detections):
    coco_gt = COCO()
    coco_gt.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
    assert evaluate_coco(coco_gt, detections, "bbox").stats == evaluate_coco(gt, detections, "bbox").stats


def test_detections_to_coco_from_model_outputs(gt):
    import torch

    image = gt["images"][0]
    h, w = image["height"], image["width"]
    masks = torch.zeros(2, 1, h, w)
    masks[0, 0, 10:20, 5:25] = 0.9
    masks[1, 0, 30:40, 40:41] = 0.6
    results = detections_to_coco(
        image["id"], torch.tensor([[5.0, 10.0, 25.0, 20.0], [40.0, 30.0, 41.0, 40.0]]), torch.tensor([0.9, 0.3]),
        np.array([26, 24]), masks,
    )
    assert [r["bbox"] for r in results] == [[5.0, 10.0, 20.0, 10.0], [40.0, 30.0, 1.0, 10.0]]
    assert [r["category_id"] for r in results] == [26, 24] and results[0]["score"] == pytest.approx(0.9)
    assert decode_segmentation(results[0]["segmentation"], h, w).sum() == 200
    assert isinstance(results[1]["segmentation"]["counts"], str)
    evaluate_coco(gt, results, "segm")  # a valid results list
    with pytest.raises(ValueError, match="differ in length"):
        detections_to_coco(1, np.zeros((2, 4)), np.zeros(3), np.zeros(2))


def test_encode_decode_round_trip():
    mask = np.zeros((7, 9), np.uint8)
    mask[2:5, 1:8] = 1
    np.testing.assert_array_equal(decode_segmentation(encode_mask(mask), 7, 9), mask)
    polygon = [[1.0, 1.0, 6.0, 1.0, 6.0, 4.0, 1.0, 4.0]]
    assert decode_segmentation(polygon, 7, 9).sum() > 0


@pytest.mark.parametrize(
    "mutate, which, fragment",
    [
        (lambda g, d: d[0].update(image_id=999), "detections", "image id 999, which is not in the ground truth"),
        (lambda g, d: d[1].update(category_id=7), "detections", "unknown category id 7"),
        (lambda g, d: d[2].pop("score"), "detections", "has no score"),
        (lambda g, d: d[0].update(bbox=[1, 2, 3]), "detections", "needs a 'bbox' of 4 numbers"),
        (lambda g, d: d[0].update(segmentation={"size": [5, 5], "counts": "abc"}), "detections", "mask of size [5, 5]"),
        (lambda g, d: d[0].pop("segmentation"), "detections", "needs an RLE 'segmentation'"),
        (lambda g, d: g["annotations"][0].update(image_id=555), "ground truth", "image id 555, which is not in 'images'"),
        (lambda g, d: g["annotations"][1].update(category_id=3), "ground truth", "unknown category id 3"),
        (lambda g, d: g.pop("categories"), "ground truth", "'categories' is missing"),
        (lambda g, d: g["images"].append(dict(g["images"][0])), "ground truth", "listed twice"),
    ],
)
def test_bad_input_is_named(gt, detections, mutate, which, fragment):
    gt, detections = copy.deepcopy(gt), copy.deepcopy(detections)
    mutate(gt, detections)
    with pytest.raises(InvalidCocoError, match=fragment.replace("[", "\\[").replace("]", "\\]")) as caught:
        evaluate_coco(gt, detections, "segm")
    assert caught.value.which == which


def test_result_json_contract():
    result = CocoResult("bbox", "pycocotools", (0.5, 0.7, 0.4, -1.0, 0.3, 0.6) + (0.1,) * 6, 3, 10)
    payload = result.to_json()
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(payload)
    assert np.isnan(payload["APs"]) and payload["AP"] == 0.5 and payload["stats"][3] == -1.0
