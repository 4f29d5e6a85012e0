"""The PQ accumulator's in-memory API: merging, pickling, torch input, ids, and errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from alignbench_test_helpers import assert_same_scores

from alignbench.bench.data.coco import panoptic_categories, read_panoptic_png
from alignbench.bench.perf import write_panoptic_benchmark_pairs
from alignbench.metrics.panoptic import InvalidPanopticError, PanopticAccumulator, id_to_rgb, rgb_to_id


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Eight decoded (pred map, pred segments, gt map, gt segments) tuples with crowd and VOID."""
    root = tmp_path_factory.mktemp("panoptic-acc")
    paths = write_panoptic_benchmark_pairs(root, n=8, size=(96, 192), density=1.2, seed=5)
    gt = json.loads(paths["gt_json"].read_text())
    pred = {a["image_id"]: a for a in json.loads(paths["pred_json"].read_text())["annotations"]}
    result = []
    for annotation in gt["annotations"]:
        prediction = pred[annotation["image_id"]]
        result.append((
            read_panoptic_png(paths["pred_dir"] / prediction["file_name"]), prediction["segments_info"],
            read_panoptic_png(paths["gt_dir"] / annotation["file_name"]), annotation["segments_info"],
        ))
    return result


def _one_pass(images) -> PanopticAccumulator:
    accumulator = PanopticAccumulator(panoptic_categories())
    for image in images:
        accumulator.update(*image)
    return accumulator


def test_merged_shards_equal_one_pass_exactly(images):
    expected = _one_pass(images).compute().to_json()
    shards = [_one_pass(images[i::3]) for i in range(3)]
    merged = PanopticAccumulator(panoptic_categories())
    for shard in reversed(shards):  # order does not matter: IoUs are summed exactly (math.fsum)
        merged.merge(pickle.loads(pickle.dumps(shard)))
    assert merged.n_images == 8
    assert_same_scores(merged.compute().to_json(), expected)
    reordered = _one_pass(images[::-1]).compute().to_json()
    assert_same_scores(reordered, expected)


def test_contract_of_to_json(images):
    payload = _one_pass(images).compute().to_json()
    for group in ("All", "Things", "Stuff"):
        assert set(payload[group]) == {"pq", "sq", "rq", "n"}
        assert 0.0 <= payload[group]["pq"] <= payload[group]["sq"] <= 1.0
    assert payload["All"]["n"] == payload["Things"]["n"] + payload["Stuff"]["n"]
    assert len(payload["per_class"]) == 19 and set(payload["per_class"]["24"]) == {"pq", "sq", "rq"}
    assert payload["n_images"] == 8


def test_pq_is_sq_times_rq_and_perfect_prediction_scores_one(images):
    result = _one_pass(images).compute()
    for scores in result.per_class.values():
        if not np.isnan(scores["pq"]):
            assert scores["pq"] == pytest.approx(scores["sq"] * scores["rq"], abs=1e-12)
    perfect = PanopticAccumulator(panoptic_categories())
    for _, _, gt_map, gt_segments in images:
        predicted = [{"id": s["id"], "category_id": s["category_id"]} for s in gt_segments]
        perfect.update(gt_map, predicted, gt_map, gt_segments)
    summary = perfect.compute().summary
    assert summary["All"]["pq"] == 1.0 and summary["All"]["n"] == 19  # crowd predictions are ignored, not FPs


def test_torch_tensors_and_reset(images):
    import torch

    pred_map, pred_segments, gt_map, gt_segments = images[0]
    with_numpy = PanopticAccumulator(panoptic_categories())
    with_numpy.update(pred_map, pred_segments, gt_map, gt_segments)
    with_torch = PanopticAccumulator(panoptic_categories())
    with_torch.update(torch.from_numpy(pred_map.astype(np.int64)), pred_segments, torch.from_numpy(gt_map), gt_segments)
    assert_same_scores(with_torch.compute().to_json(), with_numpy.compute().to_json())
    with_torch.reset()
    assert with_torch.n_images == 0 and with_torch.tp.sum() == 0


def test_all_void_ground_truth_ignores_predictions():
    accumulator = PanopticAccumulator(panoptic_categories())
    prediction = np.full((4, 4), 3)
    accumulator.update(prediction, [{"id": 3, "category_id": 26}], np.zeros((4, 4), np.int32), [])
    result = accumulator.compute()
    assert result.summary["All"]["n"] == 0 and np.isnan(result.pq)


def test_id_colour_round_trip():
    ids = np.array([[0, 1, 256, 65536], [2**24 - 1, 26001, 7, 123456]])
    np.testing.assert_array_equal(rgb_to_id(id_to_rgb(ids)), ids)
    np.testing.assert_array_equal(id_to_rgb(np.array([[26001]]))[0, 0], [26001 % 256, 26001 // 256, 0])
    with pytest.raises(ValueError):
        id_to_rgb(np.array([2**24]))


def test_merge_requires_the_same_categories():
    with pytest.raises(ValueError, match="different categories"):
        PanopticAccumulator(panoptic_categories()).merge(PanopticAccumulator(panoptic_categories()[:5]))
    with pytest.raises(ValueError, match="duplicate"):
        PanopticAccumulator([{"id": 1, "isthing": 0}, {"id": 1, "isthing": 1}])


GT = np.array([[7, 7, 0, 24001], [7, 7, 24001, 24001]])
GT_SEGMENTS = [{"id": 7, "category_id": 7, "iscrowd": 0}, {"id": 24001, "category_id": 24, "iscrowd": 0}]
PRED = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
PRED_SEGMENTS = [{"id": 1, "category_id": 7}, {"id": 2, "category_id": 24}]


@pytest.mark.parametrize(
    "pred, pred_segments, gt, gt_segments, which, source, segment_id, fragment",
    [
        (np.where(PRED == 2, 9, PRED), PRED_SEGMENTS, GT, GT_SEGMENTS, "prediction", "map", 9, "segment id 9 is in the prediction map but not in its segments_info"),
        (PRED, PRED_SEGMENTS + [{"id": 5, "category_id": 7}], GT, GT_SEGMENTS, "prediction", "segments", 5, "segment id 5 is in segments_info but not in the prediction map"),
        (PRED, PRED_SEGMENTS, np.where(GT == 7, 8, GT), GT_SEGMENTS, "ground truth", "map", 8, "segment id 8 is in the ground truth map"),
        (PRED, PRED_SEGMENTS, GT, GT_SEGMENTS + [{"id": 11, "category_id": 7}], "ground truth", "segments", 11, "segment id 11 is in segments_info but not in the ground truth map"),
        (PRED, [PRED_SEGMENTS[0], {"id": 2, "category_id": 99}], GT, GT_SEGMENTS, "prediction", "segments", 2, "segment id 2 has unknown category id 99"),
        (PRED, PRED_SEGMENTS + [PRED_SEGMENTS[0]], GT, GT_SEGMENTS, "prediction", "segments", 1, "segment id 1 is listed twice"),
        (PRED, [{"id": 0, "category_id": 7}], GT, GT_SEGMENTS, "prediction", "segments", None, "segment id 0 is not an integer in 1.."),
        (PRED[:, :3], PRED_SEGMENTS, GT, GT_SEGMENTS, "prediction", "map", None, "prediction size 3x2 differs from ground truth 4x2"),
        (PRED.astype(float), PRED_SEGMENTS, GT, GT_SEGMENTS, "prediction", "map", None, "must hold integers"),
        (PRED - 3, PRED_SEGMENTS, GT, GT_SEGMENTS, "prediction", "map", -2, "segment id -2 outside"),
        (PRED, [{"id": 1}], GT, GT_SEGMENTS, "prediction", "segments", None, "has no 'id' or 'category_id'"),
    ],
)
def test_bad_input_raises_with_side_source_and_id(pred, pred_segments, gt, gt_segments, which, source, segment_id, fragment):
    accumulator = PanopticAccumulator(panoptic_categories())
    with pytest.raises(InvalidPanopticError) as caught:
        accumulator.update(pred, pred_segments, gt, gt_segments)
    error = caught.value
    assert (error.which, error.source, error.segment_id) == (which, source, segment_id)
    assert fragment in str(error)
    assert accumulator.n_images == 0 and accumulator.tp.sum() == accumulator.fp.sum() == 0  # nothing half-added
