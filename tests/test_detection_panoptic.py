"""Panoptic FPN's merge of instances and semantic labels (detectron2's combine rules) on hand-made inputs,
and its output fed to PanopticAccumulator through bench.evaluation.detection."""

import numpy as np
import pytest
import torch

from alignbench.bench.data.coco import CategoryTable
from alignbench.bench.evaluation.detection import coco_detections, panoptic_prediction
from alignbench.metrics.panoptic import PanopticAccumulator
from alignbench.models.detection import combine_panoptic


def box_mask(height, width, rows, columns):
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[rows[0] : rows[1], columns[0] : columns[1]] = True
    return mask


def merge(masks, scores, labels, semantic, **options):
    return combine_panoptic(
        torch.stack(masks) if masks else torch.zeros((0, *semantic.shape), dtype=torch.bool),
        torch.tensor(scores, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.int64),
        semantic,
        **options,
    )


def test_instances_are_added_by_decreasing_score_and_take_free_pixels_only():
    semantic = torch.zeros(4, 20, dtype=torch.int64)  # all "things": no stuff segment
    low = box_mask(4, 20, (0, 4), (0, 10))  # 40 px, score 0.6
    high = box_mask(4, 20, (0, 4), (5, 15))  # 40 px, score 0.9; overlap 20 px = exactly 0.5 of `low`
    panoptic, segments = merge([low, high], [0.6, 0.9], [3, 5], semantic, stuff_area_limit=1)
    expected = np.zeros((4, 20), np.int32)
    expected[:, 5:15] = 1  # the higher score first, whole
    expected[:, 0:5] = 2  # the lower one keeps its free half (0.5 is not > 0.5)
    np.testing.assert_array_equal(panoptic.numpy(), expected)
    assert segments == [
        {"id": 1, "isthing": True, "category_id": 5, "score": pytest.approx(0.9), "instance_id": 1, "area": 40},
        {"id": 2, "isthing": True, "category_id": 3, "score": pytest.approx(0.6), "instance_id": 0, "area": 20},
    ]
    # Input order does not matter, only scores do.
    swapped, swapped_segments = merge([high, low], [0.9, 0.6], [5, 3], semantic, stuff_area_limit=1)
    np.testing.assert_array_equal(swapped.numpy(), expected)
    assert [s["category_id"] for s in swapped_segments] == [5, 3]


def test_overlap_threshold_drops_instances_mostly_covered():
    semantic = torch.zeros(4, 20, dtype=torch.int64)
    first = box_mask(4, 20, (0, 4), (0, 10))
    second = box_mask(4, 20, (0, 4), (4, 14))  # 24 of 40 px (0.6) under `first`
    panoptic, segments = merge([first, second], [0.9, 0.8], [1, 2], semantic)
    assert [s["category_id"] for s in segments] == [1]
    assert int((panoptic == 1).sum()) == 40 and int((panoptic == 0).sum()) == 40
    panoptic, segments = merge([first, second], [0.9, 0.8], [1, 2], semantic, overlap_threshold=0.7)
    assert [(s["category_id"], s["area"]) for s in segments] == [(1, 40), (2, 16)]
    assert bool((panoptic[:, 10:14] == 2).all())


def test_score_threshold_stops_at_the_first_low_score_and_empty_masks_are_skipped():
    semantic = torch.zeros(4, 20, dtype=torch.int64)
    empty = torch.zeros(4, 20, dtype=torch.bool)
    kept = box_mask(4, 20, (0, 2), (0, 4))
    low = box_mask(4, 20, (2, 4), (0, 4))
    panoptic, segments = merge([empty, kept, low], [0.95, 0.7, 0.3], [4, 6, 7], semantic)
    assert [(s["id"], s["category_id"], s["instance_id"]) for s in segments] == [(1, 6, 1)]  # ids stay consecutive
    assert int((panoptic == 1).sum()) == 8 and int(panoptic.max()) == 1
    _, segments = merge([empty, kept, low], [0.95, 0.7, 0.3], [4, 6, 7], semantic, score_threshold=0.2)
    assert [s["category_id"] for s in segments] == [6, 7]


def test_stuff_needs_its_area_limit_of_free_pixels_and_the_rest_is_void():
    semantic = torch.zeros(6, 10, dtype=torch.int64)
    semantic[0:3, :] = 2  # 30 px of stuff label 2
    semantic[3:6, 0:5] = 1  # 15 px of stuff label 1
    # rows 3-5, columns 5-9: "things" (label 0) without an instance -> VOID
    instance = box_mask(6, 10, (0, 1), (0, 10))  # covers 10 px of label 2
    panoptic, segments = merge([instance], [0.9], [8], semantic, stuff_area_limit=20)
    assert [(s["id"], s["isthing"], s["category_id"], s["area"]) for s in segments] == [(1, True, 8, 10), (2, False, 2, 20)]
    expected = np.zeros((6, 10), np.int32)
    expected[0, :] = 1
    expected[1:3, :] = 2  # label 1 has 15 < 20 free px: VOID, as are the uncovered thing pixels
    np.testing.assert_array_equal(panoptic.numpy(), expected)
    panoptic, segments = merge([instance], [0.9], [8], semantic, stuff_area_limit=15)
    assert [(s["category_id"], s["area"]) for s in segments] == [(8, 10), (1, 15), (2, 20)]  # stuff in label order
    assert int((panoptic == 0).sum()) == 15
    # With the limit just above the free area, stuff 2 disappears too.
    _, segments = merge([instance], [0.9], [8], semantic, stuff_area_limit=21)
    assert [s["isthing"] for s in segments] == [True]


def test_default_thresholds_are_detectron2s():
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(combine_panoptic).parameters.items()}
    assert defaults["overlap_threshold"] == 0.5 and defaults["stuff_area_limit"] == 4096
    assert defaults["score_threshold"] == 0.5


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="do not match"):
        combine_panoptic(
            torch.zeros(1, 4, 4, dtype=torch.bool), torch.ones(1), torch.ones(1, dtype=torch.int64),
            torch.zeros(4, 5, dtype=torch.int64),
        )


THINGS = CategoryTable.from_coco([{"id": 26, "name": "car", "isthing": 1}, {"id": 24, "name": "person", "isthing": 1}])
STUFF = CategoryTable.from_coco([{"id": 7, "name": "road", "isthing": 0}, {"id": 23, "name": "sky", "isthing": 0}])


def test_merged_output_feeds_the_panoptic_accumulator():
    """A merge that reproduces the ground truth scores PQ = 1; one that misses a car loses it as an FN."""
    gt = np.zeros((8, 16), np.int32)
    gt[0:3, :] = 23  # sky
    gt[3:8, :] = 7  # road
    gt[4:7, 2:6] = 26001  # car 1
    gt[4:7, 9:14] = 24001  # person 1
    gt_segments = [
        {"id": 7, "category_id": 7, "iscrowd": 0}, {"id": 23, "category_id": 23, "iscrowd": 0},
        {"id": 24001, "category_id": 24, "iscrowd": 0}, {"id": 26001, "category_id": 26, "iscrowd": 0},
    ]
    semantic = torch.zeros(8, 16, dtype=torch.int64)
    semantic[0:3] = 2  # sky: stuff label 2 (id order 7, 23)
    semantic[3:8] = 1  # road: stuff label 1
    semantic[4:7, 2:6] = 0
    semantic[4:7, 9:14] = 0
    car, person = box_mask(8, 16, (4, 7), (2, 6)), box_mask(8, 16, (4, 7), (9, 14))
    output = {"boxes": torch.zeros(2, 4), "scores": torch.tensor([0.8, 0.9]), "labels": torch.tensor([2, 1])}
    # labels: car (id 26) is thing label 2, person (id 24) label 1 (CategoryTable sorts by id)
    output["panoptic"], output["segments_info"] = combine_panoptic(
        torch.stack([car, person]), output["scores"], output["labels"], semantic, stuff_area_limit=10
    )
    pred_map, pred_segments = panoptic_prediction(output, THINGS, STUFF)
    assert pred_map.dtype == np.int32
    assert {s["category_id"] for s in pred_segments} == {7, 23, 24, 26}
    categories = [{"id": i, "name": str(i), "isthing": int(i in THINGS.ids)} for i in (7, 23, 24, 26)]
    accumulator = PanopticAccumulator(categories)
    accumulator.update(pred_map, pred_segments, gt, gt_segments)
    result = accumulator.compute()
    assert result.pq == pytest.approx(1.0)

    output["panoptic"], output["segments_info"] = combine_panoptic(
        person[None], torch.tensor([0.9]), torch.tensor([1]), semantic, stuff_area_limit=10
    )
    missing = PanopticAccumulator(categories)
    missing.update(*panoptic_prediction(output, THINGS, STUFF), gt, gt_segments)
    assert missing.fn.tolist() == [0, 0, 0, 1] and missing.tp.tolist() == [1, 1, 1, 0]


def test_coco_detections_maps_labels_to_category_ids_and_encodes_masks():
    masks = torch.zeros(2, 6, 8)
    masks[0, 1:3, 1:4] = 0.9
    masks[1, 2:5, 4:8] = 0.6
    output = {
        "boxes": torch.tensor([[1.0, 1.0, 4.0, 3.0], [4.0, 2.0, 8.0, 5.0]]),
        "scores": torch.tensor([0.7, 0.4]),
        "labels": torch.tensor([1, 2]),
        "masks": masks,
    }
    results = coco_detections([output], [17], THINGS)
    assert [(r["image_id"], r["category_id"]) for r in results] == [(17, 24), (17, 26)]
    assert results[0]["bbox"] == [1.0, 1.0, 3.0, 2.0] and results[1]["score"] == pytest.approx(0.4)
    assert results[0]["segmentation"]["size"] == [6, 8]
    boxes_only = coco_detections([output], [17], THINGS, with_masks=False)
    assert "segmentation" not in boxes_only[0]
    with pytest.raises(ValueError, match="masks"):
        coco_detections([{k: v for k, v in output.items() if k != "masks"}], [17], THINGS, with_masks=True)
