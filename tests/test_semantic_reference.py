"""Every semantic score equals cityscapesscripts 2.3.0 `evaluateImgLists` (to 1e-9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from alignbench_test_helpers import assert_same_scores, perturb

from alignbench.bench.data.synthetic import generate_scene
from alignbench.bench.io import write_png
from alignbench.bench.reference import cityscapes_semantic_reference
from alignbench.metrics.labels import CITYSCAPES
from alignbench.metrics.semantic import SemanticAccumulator

TRAIN, BUS = 31, 28  # label ids (cityscapesscripts.helpers.labels)


def _write_case(tmp_path, n_images: int = 5, size=(96, 192)):
    """GT with crowd and ignore regions; 'train' absent from GT but predicted, 'bus' absent from both."""
    rng = np.random.default_rng(11)
    gt_files, pred_files, arrays = [], [], []
    for index in range(n_images):
        scene = generate_scene(5, "val", index, size)
        label_ids = scene.label_ids.copy()
        instance_ids = scene.instance_ids.copy()
        for class_id in (TRAIN, BUS):
            hidden = label_ids == class_id
            label_ids[hidden] = 0
            instance_ids[hidden] = 0
        prediction = perturb(label_ids, rng)
        prediction[prediction == BUS] = 7
        name = f"{scene.city}_{scene.sequence:06d}_{scene.frame:06d}"
        gt_file = tmp_path / f"{name}_gtFine_labelIds.png"
        write_png(gt_file, label_ids)
        write_png(tmp_path / f"{name}_gtFine_instanceIds.png", instance_ids)
        pred_file = tmp_path / f"{name}_pred.png"
        write_png(pred_file, prediction)
        gt_files.append(str(gt_file))
        pred_files.append(str(pred_file))
        arrays.append((prediction, label_ids, instance_ids))
    return gt_files, pred_files, arrays


def _assert_close(ours: dict, theirs: dict) -> None:
    assert set(ours) <= set(theirs)
    for name, value in ours.items():
        expected = theirs[name]
        if math.isnan(expected):
            assert math.isnan(value), name
        else:
            assert value == pytest.approx(expected, abs=1e-9), name


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("reference")
    gt_files, pred_files, arrays = _write_case(tmp_path)
    reference = cityscapes_semantic_reference()
    expected = reference.evaluateImgLists(pred_files, gt_files, reference.args)
    return arrays, expected


def test_case_exercises_the_rules(case):
    arrays, _ = case
    gts = np.stack([gt for _, gt, _ in arrays])
    preds = np.stack([pred for pred, _, _ in arrays])
    instances = np.stack([inst for _, _, inst in arrays])
    assert not (gts == TRAIN).any() and (preds == TRAIN).any()  # absent from gt, predicted
    assert not (gts == BUS).any() and not (preds == BUS).any()  # absent from both
    assert (~CITYSCAPES.evaluated[gts]).any()  # ignored gt ids
    assert (~CITYSCAPES.evaluated[preds]).any()  # predictions of ignored ids
    assert np.isin(instances, [24, 26]).any()  # crowd regions: bare class ids of thing classes
    assert (instances > 1000).sum() > 0


def test_all_scores_equal_cityscapesscripts(case):
    arrays, expected = case
    accumulator = SemanticAccumulator()
    for prediction, label_ids, instance_ids in arrays:
        accumulator.update(prediction, label_ids, instance_ids)
    result = accumulator.compute()
    _assert_close(result.class_iou, expected["classScores"])
    _assert_close(result.class_iiou, expected["classInstScores"])
    _assert_close(result.category_iou, expected["categoryScores"])
    _assert_close(result.category_iiou, expected["categoryInstScores"])
    assert result.miou == pytest.approx(expected["averageScoreClasses"], abs=1e-9)
    assert result.iiou == pytest.approx(expected["averageScoreInstClasses"], abs=1e-9)
    assert result.iou_category == pytest.approx(expected["averageScoreCategories"], abs=1e-9)
    assert result.iiou_category == pytest.approx(expected["averageScoreInstCategories"], abs=1e-9)
    # the rules the case exercises show up in the scores
    assert result.class_iou["train"] == 0.0
    assert math.isnan(result.class_iou["bus"])
    np.testing.assert_array_equal(result.confusion, np.asarray(expected["confMatrix"], dtype=np.int64))


def test_train_id_predictions_match_label_id_predictions(case):
    """Train-id predictions score like label-id ones whose ignored ids became 'unlabeled' (trainId2label[255])."""
    arrays, _ = case
    by_label, by_train = SemanticAccumulator(), SemanticAccumulator(pred_ids="train")
    for prediction, label_ids, instance_ids in arrays:
        as_label = np.where(CITYSCAPES.evaluated[prediction], prediction, 0).astype(np.uint8)
        by_label.update(as_label, label_ids, instance_ids)
        by_train.update(CITYSCAPES.train_id_of[prediction], label_ids, instance_ids)
    assert_same_scores(by_train.compute().to_json(), by_label.compute().to_json())
