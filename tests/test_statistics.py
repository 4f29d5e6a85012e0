"""alignbench.metrics.statistics: per-image counts that add up to the dataset scores, the paired bootstrap
against a direct computation, intervals that shrink with more images, and t-intervals with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from alignbench_test_helpers import perturb

from alignbench.metrics.labels import CITYSCAPES
from alignbench.metrics.semantic import SemanticAccumulator
from alignbench.metrics.statistics import (
    mean_iou,
    paired_bootstrap,
    panoptic_quality,
    resample_multiplicities,
    semantic_class_counts,
    standard_deviation,
    t_interval,
)


def _per_image_confusions(small_tree, fraction: float, seed: int):
    """Per-image label-id confusion matrices (full image and bands) from the accumulator's state, and the
    accumulator that saw every image."""
    from alignbench.bench.data.cityscapes import find_frames, read_frame

    rng = np.random.default_rng(seed)
    accumulator = SemanticAccumulator()
    full, bands = [], []
    for frame in find_frames(small_tree, "val"):
        sample = read_frame(frame)
        before, band_before = accumulator.confusion.copy(), accumulator.band_confusion.copy()
        accumulator.update(perturb(sample.label_ids, rng, fraction), sample.label_ids, sample.instance_ids)
        full.append(accumulator.confusion - before)
        bands.append(accumulator.band_confusion - band_before)
    return np.stack(full), np.stack(bands), accumulator


def test_per_image_class_counts_add_up_to_the_dataset_scores(small_tree):
    full, bands, accumulator = _per_image_confusions(small_tree, 0.2, seed=1)
    result = accumulator.compute()
    counts = semantic_class_counts(full, CITYSCAPES.evaluated).sum(axis=0)
    assert counts.shape == (19, 3)
    assert mean_iou(counts) == pytest.approx(result.miou, abs=1e-12)
    union = counts.sum(axis=1)
    for (name, value), (tp, total) in zip(result.class_iou.items(), zip(counts[:, 0], union)):
        assert (math.isnan(value) and total == 0) or value == pytest.approx(tp / total, abs=1e-15), name
    band_counts = semantic_class_counts(bands, CITYSCAPES.evaluated).sum(axis=0)  # (bands, classes, 3)
    for level, width in enumerate(accumulator.bands):
        assert mean_iou(band_counts[level]) == pytest.approx(result.boundary_miou[width], abs=1e-12)


def test_false_positives_on_ignored_ground_truth_are_free_and_ignored_predictions_are_false_negatives():
    confusion = np.zeros((CITYSCAPES.num_ids, CITYSCAPES.num_ids), np.int64)
    road, sidewalk, unlabeled = 7, 8, 0
    confusion[road, road] = 10
    confusion[road, unlabeled] = 3  # predicted an ignored id on road: FN of road, FP of nothing
    confusion[unlabeled, road] = 5  # predicted road on ignored gt: free
    confusion[sidewalk, road] = 2  # FP of road, FN of sidewalk
    counts = semantic_class_counts(confusion, CITYSCAPES.evaluated)
    road_index = list(CITYSCAPES.evaluated_ids).index(road)
    sidewalk_index = list(CITYSCAPES.evaluated_ids).index(sidewalk)
    assert counts[road_index].tolist() == [10, 2, 3]
    assert counts[sidewalk_index].tolist() == [0, 0, 2]
    assert mean_iou(counts) == pytest.approx((10 / 15 + 0.0) / 2)


def test_multiplicities_are_the_counts_of_seeded_uniform_draws():
    weights = resample_multiplicities(5, n_resamples=4, seed=3)
    draws = np.random.default_rng(3).integers(0, 5, size=(4, 5))
    assert weights.tolist() == [np.bincount(d, minlength=5).tolist() for d in draws]
    assert (weights.sum(axis=1) == 5).all()


def _random_counts(rng, images, classes, strength):
    tp = rng.integers(0, 50, size=(images, classes)) + strength
    fp = rng.integers(0, 20, size=(images, classes))
    fn = rng.integers(0, 20, size=(images, classes))
    return np.stack([tp, fp, fn], axis=-1)


def test_paired_bootstrap_equals_a_direct_loop_over_resamples():
    rng = np.random.default_rng(0)
    baseline, row = _random_counts(rng, 7, 3, 0), _random_counts(rng, 7, 3, 5)
    interval = paired_bootstrap(baseline, row, mean_iou, item_ndim=2, n_resamples=200, seed=11)

    def miou(counts):  # plain Python: the mean over classes of TP / (TP + FP + FN)
        return sum(tp / (tp + fp + fn) for tp, fp, fn in counts.tolist()) / len(counts)

    draws = np.random.default_rng(11).integers(0, 7, size=(200, 7))
    differences = [miou(row[d].sum(axis=0)) - miou(baseline[d].sum(axis=0)) for d in draws]
    low, high = np.quantile(differences, [0.025, 0.975])
    assert interval.estimate == pytest.approx(miou(row.sum(axis=0)) - miou(baseline.sum(axis=0)), abs=1e-12)
    assert (interval.low, interval.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert interval.method == "paired bootstrap over 7 images, 200 resamples"


def test_identical_rows_differ_by_exactly_zero_and_a_dominating_row_is_significant():
    rng = np.random.default_rng(1)
    counts = _random_counts(rng, 20, 4, 0)
    same = paired_bootstrap(counts, counts, mean_iou, item_ndim=2)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0) and not same.excludes_zero
    better = counts.copy()
    better[..., 0] += 10  # more true positives on every image
    interval = paired_bootstrap(counts, better, mean_iou, item_ndim=2)
    assert interval.low > 0 and interval.excludes_zero and interval.low <= interval.estimate <= interval.high
    worse = paired_bootstrap(better, counts, mean_iou, item_ndim=2)
    assert worse.high < 0 and worse.estimate == pytest.approx(-interval.estimate)


def test_the_interval_shrinks_as_images_are_added():
    rng = np.random.default_rng(2)
    baseline, row = _random_counts(rng, 400, 5, 0), _random_counts(rng, 400, 5, 2)
    widths = []
    for images in (25, 100, 400):
        interval = paired_bootstrap(baseline[:images], row[:images], mean_iou, item_ndim=2)
        widths.append(interval.high - interval.low)
    assert widths[0] > widths[1] > widths[2] > 0
    # about 1 / sqrt(n): 16 times the images, a quarter of the width (loosely)
    assert 2.5 < widths[0] / widths[2] < 6.5


def test_several_seeds_average_their_scores():
    rng = np.random.default_rng(4)
    seeds = np.stack([_random_counts(rng, 10, 3, s) for s in range(3)])  # (seeds, images, classes, 3)
    baseline = _random_counts(rng, 10, 3, 0)
    interval = paired_bootstrap(baseline, seeds, mean_iou, item_ndim=2, n_resamples=50)
    expected = np.mean([mean_iou(seed.sum(axis=0)) for seed in seeds]) - mean_iou(baseline.sum(axis=0))
    assert interval.estimate == pytest.approx(expected, abs=1e-12)
    one_seed = paired_bootstrap(baseline, seeds[:1], mean_iou, item_ndim=2, n_resamples=50)
    direct = paired_bootstrap(baseline, seeds[0], mean_iou, item_ndim=2, n_resamples=50)
    assert (one_seed.low, one_seed.high) == (direct.low, direct.high)
    with pytest.raises(ValueError, match="do not pair up"):
        paired_bootstrap(baseline[:5], seeds, mean_iou, item_ndim=2)


def test_panoptic_quality_of_known_counts():
    # class 0: two matches of IoU 0.8 and 0.6, one FP, one FN -> 1.4 / (2 + 0.5 + 0.5); class 1: nothing
    counts = np.array([[1.4, 2, 1, 1], [0.0, 0, 0, 0], [0.9, 1, 0, 0]])
    assert panoptic_quality(counts) == pytest.approx((1.4 / 3 + 0.9) / 2)


def test_t_interval_matches_the_textbook_value():
    interval = t_interval([1.0, 2.0, 3.0])
    half = 4.302653 * 1.0 / math.sqrt(3)  # t(0.975, 2 degrees of freedom) = 4.302653 (tables)
    assert interval.estimate == 2.0
    assert (interval.low, interval.high) == (pytest.approx(2 - half, rel=1e-6), pytest.approx(2 + half, rel=1e-6))
    assert standard_deviation([1.0, 2.0, 3.0]) == 1.0
    single = t_interval([0.5])
    assert single.estimate == 0.5 and not single.defined and not single.excludes_zero
    assert math.isnan(standard_deviation([0.5]))


# --- COCO AP ------------------------------------------------------------------------------------------------


def _coco_case(rng, n_images=6, n_categories=3):
    """Random boxes: ground truth (some crowd) and noisy detections with distinct scores."""
    images = [{"id": i + 1, "width": 200, "height": 100} for i in range(n_images)]
    annotations, detections = [], []
    for image in images:
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(0, 150), rng.uniform(0, 60)
            w, h = rng.uniform(8, 50), rng.uniform(8, 40)
            category = int(rng.integers(1, n_categories + 1))
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": category,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.1)})
            if rng.random() < 0.8:
                jitter = rng.normal(0, 4, 4)
                detections.append({"image_id": image["id"], "category_id": category, "score": float(rng.random()),
                                   "bbox": [x + jitter[0], y + jitter[1], max(2.0, w + jitter[2]), max(2.0, h + jitter[3])]})
        for _ in range(int(rng.integers(0, 3))):  # false positives
            detections.append({"image_id": image["id"], "category_id": int(rng.integers(1, n_categories + 1)),
                               "score": float(rng.random()), "bbox": [rng.uniform(0, 150), rng.uniform(0, 60), 20.0, 15.0]})
    gt = {"images": images, "annotations": annotations, "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(n_categories)]}
    return gt, detections


def _cocoeval(gt, detections):
    import contextlib
    import copy
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(copy.deepcopy(detections)), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def test_coco_ap_of_all_images_equals_cocoeval():
    from alignbench.metrics.statistics import coco_average_precision, coco_matches

    gt, detections = _coco_case(np.random.default_rng(5))
    evaluation = _cocoeval(gt, detections)
    matches = coco_matches(evaluation)
    ones = np.ones((1, len(gt["images"])))
    assert coco_average_precision(matches, ones)[0] == pytest.approx(evaluation.stats[0], abs=1e-12)
    assert coco_average_precision(matches, ones, iou=0.5)[0] == pytest.approx(evaluation.stats[1], abs=1e-12)
    assert coco_average_precision(matches, ones, iou=0.75)[0] == pytest.approx(evaluation.stats[2], abs=1e-12)


def test_coco_ap_of_a_multiset_equals_cocoeval_on_the_duplicated_dataset():
    """Counting image i w_i times must give what COCOeval gives on a dataset that holds w_i copies of it."""
    from alignbench.metrics.statistics import coco_average_precision, coco_matches

    rng = np.random.default_rng(6)
    gt, detections = _coco_case(rng)
    matches = coco_matches(_cocoeval(gt, detections))
    for multiplicity in ([2, 0, 1, 3, 0, 1], [0, 0, 4, 1, 1, 0]):
        copies = {"images": [], "annotations": [], "categories": gt["categories"]}
        copied_detections = []
        for image, times in zip(gt["images"], multiplicity):
            for copy_index in range(times):
                new_id = image["id"] * 100 + copy_index
                copies["images"].append({**image, "id": new_id})
                copies["annotations"] += [{**a, "id": len(copies["annotations"]) + k + 1, "image_id": new_id}
                                          for k, a in enumerate(x for x in gt["annotations"] if x["image_id"] == image["id"])]
                copied_detections += [{**d, "image_id": new_id} for d in detections if d["image_id"] == image["id"]]
        expected = _cocoeval(copies, copied_detections).stats[0]
        weights = np.asarray([multiplicity], dtype=np.float64)
        assert coco_average_precision(matches, weights)[0] == pytest.approx(expected, abs=1e-12), multiplicity


def test_coco_bootstrap_of_a_better_detector():
    from alignbench.metrics.statistics import bootstrap_difference, coco_matches, coco_scorer

    rng = np.random.default_rng(8)
    gt, detections = _coco_case(rng, n_images=30)
    noisy = [{**d, "score": float(rng.random())} for d in detections]  # the same boxes, scores shuffled
    good, bad = coco_matches(_cocoeval(gt, detections)), coco_matches(_cocoeval(gt, noisy))
    same = bootstrap_difference(coco_scorer(good), coco_scorer(good), 30, n_resamples=100)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    interval = bootstrap_difference(coco_scorer(bad), coco_scorer([good, good]), 30, n_resamples=200)
    assert interval.low <= interval.estimate <= interval.high
    assert interval.estimate == pytest.approx(_cocoeval(gt, detections).stats[0] - _cocoeval(gt, noisy).stats[0], abs=1e-12)
