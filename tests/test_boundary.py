"""Boundary bands equal a brute-force per-pixel reference; the three implementations agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from alignbench.metrics.boundary import band_levels, band_levels_torch, boundary_mask, boundary_mask_torch
from alignbench.metrics.labels import CITYSCAPES

EVALUATED = CITYSCAPES.evaluated
# a few evaluated ids (road, sidewalk, building, pole, car) and ignored ones (unlabeled, ego vehicle)
ID_CHOICES = np.array([7, 8, 11, 17, 26, 0, 1], dtype=np.uint8)


def brute_force_boundary(label_ids: np.ndarray, instance_ids=None) -> np.ndarray:
    """The definition, pixel by pixel: an evaluated pixel with an evaluated 8-neighbour of another label."""
    height, width = label_ids.shape
    result = np.zeros((height, width), bool)
    for y in range(height):
        for x in range(width):
            if not EVALUATED[label_ids[y, x]]:
                continue
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if (dy or dx) and 0 <= ny < height and 0 <= nx < width and EVALUATED[label_ids[ny, nx]]:
                        if label_ids[ny, nx] != label_ids[y, x]:
                            result[y, x] = True
                        if instance_ids is not None and instance_ids[ny, nx] != instance_ids[y, x]:
                            result[y, x] = True
    return result


def brute_force_levels(label_ids: np.ndarray, boundary: np.ndarray, bands) -> np.ndarray:
    """Band level of every evaluated pixel by exhaustive search for the nearest boundary pixel."""
    points = np.argwhere(boundary)
    levels = np.full(label_ids.shape, len(bands), np.uint8)
    for y, x in np.ndindex(label_ids.shape):
        if not EVALUATED[label_ids[y, x]] or not len(points):
            continue
        nearest = np.sqrt(((points - (y, x)) ** 2).sum(axis=1).min())
        for level, width in enumerate(bands):
            if nearest <= width:
                levels[y, x] = level
                break
    return levels


def blocky_map(rng, shape, block) -> np.ndarray:
    small = rng.choice(ID_CHOICES, size=(shape[0] // block + 1, shape[1] // block + 1))
    return np.kron(small, np.ones((block, block), np.uint8))[: shape[0], : shape[1]]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("method", ["dilate", "distance"])
def test_bands_equal_brute_force(seed, method):
    rng = np.random.default_rng(seed)
    label_ids = blocky_map(rng, (23, 37), block=int(rng.integers(2, 7)))
    bands = (0, 1, 3, 5, 8, 12)
    boundary = boundary_mask(label_ids, EVALUATED)
    np.testing.assert_array_equal(boundary, brute_force_boundary(label_ids))
    levels = band_levels(boundary, bands, method=method)
    levels[~EVALUATED[label_ids]] = len(bands)  # bands hold evaluated pixels only
    np.testing.assert_array_equal(levels, brute_force_levels(label_ids, boundary, bands))


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 14), st.integers(1, 14)), elements=st.sampled_from(ID_CHOICES.tolist())))
def test_boundary_and_bands_on_arbitrary_maps(label_ids):
    boundary = boundary_mask(label_ids, EVALUATED)
    np.testing.assert_array_equal(boundary, brute_force_boundary(label_ids))
    expected = brute_force_levels(label_ids, boundary, (1, 3, 5))
    for method in ("dilate", "distance"):
        levels = band_levels(boundary, (1, 3, 5), method=method)
        levels[~EVALUATED[label_ids]] = 3
        np.testing.assert_array_equal(levels, expected)
    levels = band_levels_torch(torch.from_numpy(boundary), (1, 3, 5)).numpy()
    levels[~EVALUATED[label_ids]] = 3
    np.testing.assert_array_equal(levels, expected)


def test_instance_outlines_are_boundaries():
    label_ids = np.full((9, 12), 26, np.uint8)  # all car
    instance_ids = np.full((9, 12), 26000, np.uint16)
    instance_ids[:, 6:] = 26001  # two touching cars
    assert not boundary_mask(label_ids, EVALUATED).any()
    with_instances = boundary_mask(label_ids, EVALUATED, instance_ids)
    np.testing.assert_array_equal(with_instances, brute_force_boundary(label_ids, instance_ids))
    assert with_instances[:, 5:7].all() and with_instances.sum() == 18


def test_ignore_regions_and_border_create_no_boundary():
    label_ids = np.full((10, 10), 7, np.uint8)  # road
    label_ids[3:6, 3:6] = 0  # an ignored hole
    assert not boundary_mask(label_ids, EVALUATED).any()
    levels = band_levels(boundary_mask(label_ids, EVALUATED), (3, 5))
    assert (levels == 2).all()


def test_torch_path_equals_numpy_path_on_larger_maps():
    rng = np.random.default_rng(0)
    label_ids = blocky_map(rng, (120, 200), block=9)
    instance_ids = label_ids.astype(np.uint16) * 1000 + rng.integers(0, 3, label_ids.shape).astype(np.uint16)
    bands = (3, 5, 8, 12)
    for instances in (None, instance_ids):
        expected = boundary_mask(label_ids, EVALUATED, instances)
        got = boundary_mask_torch(
            torch.from_numpy(label_ids), torch.from_numpy(EVALUATED), None if instances is None else torch.from_numpy(instances.astype(np.int32))
        ).numpy()
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(
            band_levels_torch(torch.from_numpy(expected), bands).numpy(), band_levels(expected, bands)
        )
