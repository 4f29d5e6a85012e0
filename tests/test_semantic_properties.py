"""Properties of the semantic accumulator (hypothesis): merging, perfect predictions, order, devices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from alignbench_test_helpers import assert_same_scores, perturb
from hypothesis import given, settings
from hypothesis import strategies as st

from alignbench.bench.data.synthetic import generate_scene
from alignbench.metrics.labels import CITYSCAPES
from alignbench.metrics.semantic import InvalidMapError, SemanticAccumulator

SIZE = (48, 96)
SCENES = [generate_scene(21, "val", index, SIZE) for index in range(6)]


def _images(seed: int, count: int):
    """(prediction, gt, instances) triples from cached scenes with seeded perturbations."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(SCENES), count)
    return [(perturb(SCENES[i].label_ids, rng, 0.3), SCENES[i].label_ids, SCENES[i].instance_ids) for i in picks]


def _accumulate(images, **options) -> SemanticAccumulator:
    accumulator = SemanticAccumulator(**options)
    for prediction, gt, instances in images:
        accumulator.update(prediction, gt, instances)
    return accumulator


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(2, 6), split=st.integers(1, 5))
def test_merging_two_accumulators_equals_one_pass(seed, count, split):
    images = _images(seed, count)
    split = min(split, count - 1)
    merged = _accumulate(images[:split]).merge(_accumulate(images[split:]))
    whole = _accumulate(images)
    assert_same_scores(merged.compute().to_json(), whole.compute().to_json())
    np.testing.assert_array_equal(merged.band_confusion, whole.band_confusion)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(2, 6))
def test_results_do_not_depend_on_image_order(seed, count):
    images = _images(seed, count)
    order = np.random.default_rng(seed).permutation(count)
    shuffled = [images[i] for i in order]
    assert_same_scores(_accumulate(images).compute().to_json(), _accumulate(shuffled).compute().to_json())


@settings(max_examples=10, deadline=None)
@given(indices=st.lists(st.integers(0, len(SCENES) - 1), min_size=1, max_size=4))
def test_perfect_prediction_scores_one_on_every_present_class(indices):
    accumulator = SemanticAccumulator()
    for index in indices:
        scene = SCENES[index]
        accumulator.update(scene.label_ids, scene.label_ids, scene.instance_ids)
    result = accumulator.compute()
    present = {CITYSCAPES.names[i] for index in indices for i in np.unique(SCENES[index].label_ids)}
    for name, value in result.class_iou.items():
        if name in present:
            assert value == 1.0, name
        else:
            assert math.isnan(value), name
    for name, value in result.class_iiou.items():
        assert math.isnan(value) or value == pytest.approx(1.0, abs=1e-12), name
    assert result.miou == 1.0 and result.iou_category == 1.0
    assert all(value == 1.0 for value in result.boundary_miou.values())


def test_perfect_prediction_of_a_class_absent_from_gt_is_nan_and_prediction_of_it_is_zero():
    gt = np.full((8, 8), 7, np.uint8)
    prediction = gt.copy()
    prediction[0, 0] = 26  # car predicted, absent from gt
    result = _accumulate([(prediction, gt, gt.astype(np.uint16))]).compute()
    assert result.class_iou["car"] == 0.0
    assert math.isnan(result.class_iou["bus"])
    assert result.class_iou["road"] == pytest.approx(63 / 64)


def test_torch_cpu_tensors_equal_numpy():
    images = _images(1, 4)
    as_tensors = [tuple(torch.from_numpy(a.astype(np.int64)) for a in image) for image in images]
    assert_same_scores(_accumulate(images).compute().to_json(), _accumulate(as_tensors).compute().to_json())


def _torch_path(images, device: str, **options) -> SemanticAccumulator:
    """Force the on-device torch implementation (the CUDA path), here also on CPU tensors."""
    accumulator = SemanticAccumulator(**options)
    for prediction, gt, instances in images:
        accumulator._update_torch(
            torch.from_numpy(prediction).to(device),
            torch.from_numpy(gt).to(device),
            torch.from_numpy(instances.astype(np.int32)).to(device),
        )
    return accumulator


@pytest.mark.parametrize("options", [{}, {"instance_boundaries": True}, {"pred_ids": "train"}])
def test_torch_implementation_equals_numpy_implementation(options):
    images = _images(2, 4)
    if options.get("pred_ids") == "train":
        images = [(CITYSCAPES.train_id_of[p], g, i) for p, g, i in images]
    expected = _accumulate(images, **options)
    got = _torch_path(images, "cpu", **options)
    np.testing.assert_array_equal(got.confusion, expected.confusion)
    np.testing.assert_array_equal(got.band_confusion, expected.band_confusion)
    assert_same_scores(got.compute().to_json(), expected.compute().to_json())


@pytest.mark.cuda
def test_cuda_and_cpu_paths_agree():
    images = _images(4, 5)
    expected = _accumulate(images).compute().to_json()
    on_gpu = SemanticAccumulator()
    for prediction, gt, instances in images:
        on_gpu.update(*(torch.from_numpy(a.astype(np.int64)).cuda() for a in (prediction, gt, instances)))
    assert_same_scores(on_gpu.compute().to_json(), expected)


@pytest.mark.parametrize(
    "prediction, gt, instances, which, text",
    [
        (np.full((4, 4), 34, np.uint8), np.full((4, 4), 7, np.uint8), None, "prediction", "label id 34 outside 0..33"),
        (np.full((4, 4), 7, np.uint8), np.full((4, 4), 40, np.uint8), None, "ground truth", "label id 40 outside 0..33"),
        (np.full((4, 5), 7, np.uint8), np.full((4, 4), 7, np.uint8), None, "prediction", "differs from ground truth"),
        (np.full((4, 4), 7, np.uint8), np.full((4, 4), 7, np.uint8), np.full((4, 4), 7001, np.uint16), "instances", "'road' has no instances"),
        (np.full((4, 4), 7.0), np.full((4, 4), 7, np.uint8), None, "prediction", "must hold integers"),
    ],
)
def test_invalid_maps_name_the_map_and_the_problem(prediction, gt, instances, which, text):
    with pytest.raises(InvalidMapError, match=text) as error:
        SemanticAccumulator().update(prediction, gt, instances)
    assert error.value.which == which


def test_train_ids_outside_the_table_are_rejected():
    with pytest.raises(InvalidMapError, match="train id 25 outside 0..18 and 255"):
        SemanticAccumulator(pred_ids="train").update(np.full((4, 4), 25, np.uint8), np.full((4, 4), 7, np.uint8))


def test_merge_refuses_different_bands():
    with pytest.raises(ValueError, match="bands"):
        SemanticAccumulator(bands=(3,)).merge(SemanticAccumulator(bands=(3, 5)))


def test_reset_clears_state():
    accumulator = _accumulate(_images(5, 2))
    accumulator.reset()
    assert accumulator.n_images == 0 and accumulator.confusion.sum() == 0 and accumulator.band_confusion.sum() == 0
    assert math.isnan(accumulator.compute().miou)


def test_accumulator_pickles_for_worker_processes():
    import pickle

    accumulator = _accumulate(_images(6, 2))
    clone = pickle.loads(pickle.dumps(accumulator))
    assert_same_scores(clone.compute().to_json(), accumulator.compute().to_json())
