"""faster-coco-eval against pycocotools on the same data (skipped when faster-coco-eval is absent).

Finding (faster-coco-eval 1.8.0, pycocotools 2.0.11): the matching, recall and precision are the same,
except one floating-point detail. pycocotools computes precision as tp / (tp + fp + np.spacing(1)),
faster-coco-eval's C++ accumulate as tp / (tp + fp). For tp + fp >= 2 the spacing vanishes in the
rounding, so the two differ only when a precision curve starts with a true positive: 1 / (1 + 2^-52)
= 1 - 2^-52 against 1.0. The summary stats therefore agree to the last bit or within about 1e-16; the
tests pin exactly that. Because they are not always bit-identical, faster-coco-eval is not offered as a
results backend (DESIGN.md's rule); it is only timed and compared.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

from alignbench.bench.perf import synthetic_coco_ground_truth, synthetic_detections
from alignbench.metrics.coco import evaluate_coco, faster_coco_eval_for_comparison

faster_coco_eval = pytest.importorskip("faster_coco_eval")

FIRST_TP_PRECISION = 1.0 / (1.0 + np.spacing(1))  # pycocotools' precision after one true positive


def _datasets():
    for seed in range(3):
        gt = synthetic_coco_ground_truth(4, (96, 192), density=1.5, seed=seed)
        yield gt, synthetic_detections(gt, np.random.default_rng(seed + 20))


@pytest.fixture(scope="module")
def datasets():
    return list(_datasets())


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_stats_agree_to_the_last_bits(datasets, iou_type):
    exact = 0
    for gt, detections in datasets:
        ours = evaluate_coco(gt, detections, iou_type, "pycocotools").stats
        faster = faster_coco_eval_for_comparison(gt, detections, iou_type).stats
        assert len(ours) == len(faster) == 12
        assert np.max(np.abs(np.subtract(ours, faster))) <= 1e-15
        exact += ours == faster
    assert exact >= 1  # bit-identical on at least one data set


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_accumulated_curves_differ_only_by_pycocotools_spacing(datasets, iou_type):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    for gt, detections in datasets:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = copy.deepcopy(gt)
            coco_gt.createIndex()
            reference = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(detections)), iou_type)
            reference.evaluate()
            reference.accumulate()
        faster_gt = faster_coco_eval.COCO(copy.deepcopy(gt))
        faster = faster_coco_eval.COCOeval_faster(
            faster_gt, faster_gt.loadRes(copy.deepcopy(detections)), iou_type, print_function=lambda *a, **k: None
        )
        faster.evaluate()
        faster.accumulate()
        np.testing.assert_array_equal(reference.eval["recall"], faster.eval["recall"])
        precision = reference.eval["precision"].copy()
        assert (precision == FIRST_TP_PRECISION).any()
        precision[precision == FIRST_TP_PRECISION] = 1.0
        np.testing.assert_array_equal(precision, faster.eval["precision"])


def test_empty_detections_agree(datasets):
    gt, _ = datasets[0]
    for iou_type in ("bbox", "segm"):
        assert evaluate_coco(gt, [], iou_type).stats == faster_coco_eval_for_comparison(gt, [], iou_type).stats
