"""Boundary bands for boundary-band mIoU (FaPN Table 2 reports mIoU at 3/5/8/12 px around outlines).

Definition (ours: FaPN publishes no code for its Table 2, so this is stated here and in every report):

* A ground-truth boundary pixel is an evaluated (non-ignored) pixel with at least one 8-neighbour that
  carries a different evaluated label. Ignored regions and the image border never create boundaries.
  Optionally instance outlines count too (`instance_ids`): evaluated neighbours with different instance
  ids (Cityscapes instanceIds: stuff pixels carry their label id, so label changes are included).
* The band of width n is every evaluated pixel whose Euclidean distance (between pixel centres) to the
  nearest boundary pixel is <= n; boundary pixels themselves are at distance 0.
* Boundary-band mIoU(n) is the Cityscapes-style mIoU of one dataset-level confusion matrix accumulated
  over band pixels only (see metrics.semantic).
* Widths are stated in pixels at a reference size: FaPN's 3/5/8/12 px are pixels of Cityscapes' 1024x2048
  frames. A map of another size gets widths scaled by the ratio of the image diagonals, rounded up, and at
  least 1 px for a positive width (`scaled_widths`): at 128x256, 3/5/8/12 px become 1/1/1/2 px, the narrowest
  bands a map of that size has. Without a reference size the widths are pixels of each map as given.

Three implementations give identical bands (the tests check each against brute force): for numpy
input, chained dilations by exact Euclidean disks (fastest for a few narrow bands) or OpenCV's exact distance
transform (constant cost, for many or wide bands); for torch tensors (CUDA), a separable exact distance
truncated at the widest band, written by hand because no torch library computes Euclidean distances.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

DEFAULT_BANDS = (3, 5, 8, 12)
_SQUARE_3X3 = np.ones((3, 3), dtype=np.uint8)


def validate_bands(bands: Sequence[int]) -> tuple[int, ...]:
    """Band widths as a sorted tuple of distinct positive integers."""
    widths = tuple(sorted({int(b) for b in bands}))
    if not widths or widths[0] < 0 or any(int(b) != b for b in bands):
        raise ValueError(f"band widths must be non-negative integers, got {list(bands)}")
    return widths


def scaled_widths(
    bands: Sequence[int], size: tuple[int, int], reference_size: tuple[int, int] | None
) -> tuple[int, ...]:
    """The band widths, stated at `reference_size` (H, W), for a map of `size` (H, W), in the order given.

    Scaled by the ratio of the diagonals, rounded up, at least 1 px for a positive width (a 0 px band, the
    boundary pixels alone, stays 0); unchanged without a reference size or at it. Widths may coincide after
    scaling (3 and 5 px at 1/8 of the size are both 1 px).
    """
    if reference_size is None or tuple(size) == tuple(reference_size):
        return tuple(int(width) for width in bands)
    scale = math.hypot(*size) / math.hypot(*reference_size)
    # the 1e-9 keeps an exact product (8 px at half the size: 4.0) from rounding up to the next pixel
    return tuple(0 if width == 0 else max(1, math.ceil(width * scale - 1e-9)) for width in bands)


def boundary_mask(
    label_ids: np.ndarray, evaluated: np.ndarray, instance_ids: np.ndarray | None = None
) -> np.ndarray:
    """Boolean HxW map of ground-truth boundary pixels (definition in the module docstring).

    `label_ids` is a uint8 map, `evaluated` a bool lookup by label id. A 3x3 max over (id where
    evaluated, else 0) and a 3x3 min over (id where evaluated, else the largest value) both equal a
    pixel's own id exactly when no evaluated 8-neighbour differs from it; OpenCV pads the border with
    the neutral value, so the image edge creates nothing.
    """
    label_ids = np.ascontiguousarray(label_ids, dtype=np.uint8)
    mask = _evaluated_mask(label_ids, evaluated)  # 255 where evaluated
    low = cv2.bitwise_and(label_ids, mask)  # the id where evaluated, else 0
    high = cv2.bitwise_or(label_ids, np.invert(mask))  # the id where evaluated, else 255
    differs = _differs_from_neighbours(low, high)
    if instance_ids is not None:
        instance_map = np.ascontiguousarray(instance_ids, dtype=np.uint16)
        evaluated_mask = mask > 0
        low = np.where(evaluated_mask, instance_map, 0).astype(np.uint16)
        high = np.where(evaluated_mask, instance_map, np.iinfo(np.uint16).max).astype(np.uint16)
        differs = cv2.bitwise_or(differs, _differs_from_neighbours(low, high))
    return cv2.bitwise_and(differs, mask) > 0


@functools.lru_cache(maxsize=8)
def _id_ranges(evaluated: tuple[bool, ...]) -> tuple[tuple[int, int], ...]:
    """Runs of consecutive evaluated ids as (first, last) pairs."""
    ranges: list[list[int]] = []
    for label_id, flag in enumerate(evaluated):
        if flag and ranges and ranges[-1][1] == label_id - 1:
            ranges[-1][1] = label_id
        elif flag:
            ranges.append([label_id, label_id])
    return tuple((first, last) for first, last in ranges)


def _evaluated_mask(label_ids: np.ndarray, evaluated: np.ndarray) -> np.ndarray:
    """uint8 map, 255 where the id is evaluated, else 0.

    One `cv2.inRange` per run of consecutive evaluated ids (5 for Cityscapes) ORed together: these passes
    run at memory speed, while `cv2.LUT` (OpenCV 5) is about 20 times slower per pass.
    """
    ranges = _id_ranges(tuple(bool(flag) for flag in evaluated[:256]))
    if not ranges:
        return np.zeros_like(label_ids)
    if len(ranges) > 12:  # many scattered ids: one table lookup is cheaper
        table = np.zeros(256, np.uint8)
        table[: len(evaluated)] = np.where(evaluated, 255, 0)
        return cv2.LUT(label_ids, table)
    mask = cv2.inRange(label_ids, ranges[0][0], ranges[0][1])
    for first, last in ranges[1:]:
        cv2.bitwise_or(mask, cv2.inRange(label_ids, first, last), dst=mask)
    return mask


def _differs_from_neighbours(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """255 where an evaluated pixel has an evaluated 8-neighbour of another value (uint8 0/255; only
    meaningful at evaluated pixels, where `low` and `high` both hold the pixel's value).

    At such a pixel the 3x3 max of `low` is >= its value and the 3x3 min of `high` is <= it, so both
    equal it, i.e. they equal each other, exactly when no evaluated neighbour differs.
    """
    return cv2.compare(cv2.dilate(low, _SQUARE_3X3), cv2.erode(high, _SQUARE_3X3), cv2.CMP_NE)


def disk(radius: int) -> np.ndarray:
    """uint8 structuring element of every offset (dy, dx) with dy^2 + dx^2 <= radius^2."""
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (dy * dy + dx * dx <= radius * radius).astype(np.uint8)


def distance_to_boundary(boundary: np.ndarray) -> np.ndarray | None:
    """Exact Euclidean distance (float32) of every pixel to the nearest boundary pixel; None if none."""
    if not boundary.any():
        return None
    free = np.ascontiguousarray(boundary, dtype=np.uint8) ^ 1
    return cv2.distanceTransform(free, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _disk_points(radius: int) -> float:
    """Number of offsets in disk(radius), without building it (the cost model below needs only this)."""
    if radius > 4096:
        return math.pi * radius * radius
    dy = np.arange(-radius, radius + 1, dtype=np.int64)
    return float((2 * np.floor(np.sqrt(radius * radius - dy * dy)) + 1).sum())


@dataclass(frozen=True)
class _Step:
    """disk(width) = (disk(previous width) + step) | rest: dilate the previous band by `step` and the
    boundary by `rest`; `from_boundary` means dilating the boundary by `step` = disk(width) directly."""

    step: np.ndarray
    rest: np.ndarray | None
    from_boundary: bool


@functools.lru_cache(maxsize=32)
def _dilation_plan(widths: tuple[int, ...]) -> tuple[_Step, ...]:
    """How to dilate the boundary by disk(w) for each width w (ascending), reusing the previous band.

    The Minkowski sum disk(w_prev) + disk(w - w_prev) lies inside disk(w) (triangle inequality) and
    misses only a thin rim of it, `rest`. OpenCV's dilation by a non-rectangular kernel costs about one
    pass over the image per kernel offset, so 3/5/8/12 px take 144 passes this way instead of 748.
    Chaining inside the image is exact: the image rectangle is convex, so the intermediate point of a
    decomposition can be clamped into it without lengthening either part.
    """
    plan = []
    previous = None
    for width in widths:
        direct = disk(width)
        if previous is None:
            plan.append(_Step(direct, None, from_boundary=True))
        else:
            step = disk(width - previous)
            covered = cv2.dilate(np.pad(disk(previous), width - previous), step)
            rest = direct & (covered ^ 1)
            if int(step.sum()) + int(rest.sum()) < int(direct.sum()):
                plan.append(_Step(step, rest if rest.any() else None, from_boundary=False))
            else:
                plan.append(_Step(direct, None, from_boundary=True))
        previous = width
    return tuple(plan)


def _plan_passes(widths: Sequence[int]) -> float:
    """Kernel offsets the dilation plan visits, estimated without building kernels (widths may be huge)."""
    passes, previous = 0.0, None
    for width in widths:
        if previous is None:
            passes += _disk_points(width)
        else:  # a chained step's rest is a thin rim; 2 * width offsets bounds the measured ones
            passes += min(_disk_points(width), _disk_points(width - previous) + 2 * width)
        previous = width
    return passes


# One exact distance transform costs about as much as 1500 disk-kernel passes (OpenCV 5, one thread,
# 1024x2048, timed side by side: the distance transform about 8x the 144-pass plan for 3/5/8/12 px);
# below the budget the chained dilations are faster. Both give identical bands (tests/test_boundary.py).
_DILATION_BUDGET = 1200


@functools.lru_cache(maxsize=32)
def _faster_method(widths: tuple[int, ...]) -> str:
    return "dilate" if _plan_passes(widths) <= _DILATION_BUDGET else "distance"


def band_levels(boundary: np.ndarray, bands: Sequence[int], method: str = "auto") -> np.ndarray:
    """HxW index of the narrowest band containing each pixel, len(bands) for pixels in none.

    uint8 for up to 254 bands, uint16 beyond. A pixel at level j belongs to bands j, j+1, ... (bands are
    nested). `method` is "dilate" (chained dilations by exact Euclidean disks, see `_dilation_plan`),
    "distance" (one exact distance transform) or "auto" (the faster of the two for these widths).
    """
    widths = validate_bands(bands)
    dtype = np.uint8 if len(widths) < 255 else np.uint16
    if method == "auto":
        method = _faster_method(widths)
    if method == "dilate":
        marks = np.ascontiguousarray(boundary, dtype=np.uint8)
        levels = np.full(marks.shape, len(widths), dtype)
        band = marks
        for step in _dilation_plan(widths):
            band = cv2.dilate(marks if step.from_boundary else band, step.step)
            if step.rest is not None:
                band = cv2.max(band, cv2.dilate(marks, step.rest))
            # nested bands: the level drops by one for every band a pixel is in
            levels = cv2.subtract(levels, band.astype(dtype, copy=False))
        return levels
    if method != "distance":
        raise ValueError(f"method must be 'auto', 'dilate' or 'distance', got {method!r}")
    distance = distance_to_boundary(boundary)
    if distance is None:
        return np.full(boundary.shape, len(widths), dtype)
    # With integer widths, d <= w exactly when ceil(d) <= w; the level is the number of widths below
    # ceil(d). Distances are square roots of integers, far from the next integer in float32. Distances
    # beyond the widest band are capped just above it, so any width (and any number of bands) is exact.
    np.minimum(distance, widths[-1] + 1, out=distance)
    np.ceil(distance, out=distance)
    if widths[-1] < 255:
        level_of_ceiling = np.searchsorted(np.asarray(widths), np.arange(256), side="left").astype(np.uint8)
        return cv2.LUT(distance.astype(np.uint8), level_of_ceiling).astype(dtype, copy=False)
    return np.searchsorted(np.asarray(widths, np.float64), distance, side="left").astype(dtype)


# --- torch path (used for CUDA tensors; also runs on CPU tensors, which the tests use) -----------------


def boundary_mask_torch(
    label_ids: torch.Tensor, evaluated: torch.Tensor, instance_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """Torch version of `boundary_mask` on the tensor's device (3x3 max-pooling with neutral padding)."""
    is_evaluated = evaluated[label_ids.long()]
    boundary = _differs_from_neighbours_torch(label_ids.long(), is_evaluated)
    if instance_ids is not None:
        boundary |= _differs_from_neighbours_torch(instance_ids.long(), is_evaluated)
    return boundary


def _differs_from_neighbours_torch(values: torch.Tensor, is_evaluated: torch.Tensor) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    # float32 holds every id exactly (ids < 2**24); max_pool2d pads with -inf, so borders are neutral.
    as_float = values.to(torch.float32)
    low = torch.where(is_evaluated, as_float, torch.full_like(as_float, -1.0))
    high = torch.where(is_evaluated, as_float, torch.full_like(as_float, float(2**24)))
    largest = F.max_pool2d(low[None, None], 3, stride=1, padding=1)[0, 0]
    smallest = -F.max_pool2d(-high[None, None], 3, stride=1, padding=1)[0, 0]
    return is_evaluated & ((largest != as_float) | (smallest != as_float))


def band_levels_torch(boundary: torch.Tensor, bands: Sequence[int]) -> torch.Tensor:
    """Torch version of `band_levels`: exact squared distances, truncated beyond the widest band.

    Pass 1 finds, per pixel, the horizontal distance to the nearest boundary pixel in its row (up to R);
    pass 2 takes the minimum over rows within R of dy^2 + that distance^2. Any boundary pixel within
    Euclidean distance R has |dx|, |dy| <= R, so the result is exact wherever it is <= R^2.
    """
    import torch

    widths = validate_bands(bands)
    height, width = boundary.shape
    # No two pixels are farther apart than the diagonal: a wider radius changes nothing, and capping it
    # keeps the squared distances in int32 for any width.
    radius = min(widths[-1], math.ceil(math.hypot(height, width)))
    beyond = (radius + 1) ** 2  # larger than every squared distance that is looked at
    row_distance = torch.where(boundary, 0, beyond).to(torch.int32)
    for shift in range(1, min(radius, width - 1) + 1):
        # a boundary pixel `shift` columns to the left (right) puts column x at distance `shift`
        from_left = torch.where(boundary[:, :-shift], shift, beyond).to(torch.int32)
        from_right = torch.where(boundary[:, shift:], shift, beyond).to(torch.int32)
        row_distance[:, shift:] = torch.minimum(row_distance[:, shift:], from_left)
        row_distance[:, :-shift] = torch.minimum(row_distance[:, :-shift], from_right)
    row_squared = torch.where(row_distance <= radius, row_distance * row_distance, beyond)
    squared = row_squared.clone()
    for shift in range(1, min(radius, height - 1) + 1):
        offset = shift * shift
        squared[shift:] = torch.minimum(squared[shift:], row_squared[:-shift] + offset)
        squared[:-shift] = torch.minimum(squared[:-shift], row_squared[shift:] + offset)
    dtype = torch.uint8 if len(widths) < 255 else torch.int32
    levels = torch.full((height, width), len(widths), dtype=dtype, device=boundary.device)
    for band in reversed(widths):
        levels[squared <= min(band, radius) ** 2] -= 1
    return levels
