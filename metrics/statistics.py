"""How sure is a measured difference? Paired bootstrap over images, and t-intervals over seeds.

No evaluation toolbox (cityscapesscripts, pycocotools, panopticapi, torchmetrics) resamples its own
dataset-level scores, so this module does it from per-image statistics, written here with numpy (resampling)
and scipy (Student's t):

* Per-image statistics are counts that add up over images to the dataset-level state, so a resample of the
  images is a weighted sum of them: semantic per-class (TP, FP, FN) from each image's confusion matrix, with
  cityscapesscripts' rules (`semantic_class_counts`); panoptic per-class (IoU sum, TP, FP, FN).
* `paired_bootstrap` draws `n_resamples` resamples of the images (with replacement, one seeded generator),
  applies the same resample to both rows (paired: the same images), and reports the difference
  `row - baseline` with the percentile interval. A resample is a vector of image multiplicities, so all
  resamples are one matrix product (vectorised, no Python loop over resamples).
* Several seeds: per-image statistics of shape (seeds, images, ...) give each resample's score per seed,
  averaged over seeds (the reported value is the mean over seeds).
* `t_interval` is the mean of a few values (seeds, or per-seed differences) with its Student-t interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval [low, high] (NaN bounds where the interval is undefined)."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str  # "paired bootstrap over N images, R resamples" / "t over N seeds"

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of zero (the difference is significant)."""
        return self.defined and (self.low > 0 or self.high < 0)

    def to_json(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "confidence": self.confidence,
                "method": self.method}


# --- per-image statistics ------------------------------------------------------------------------------


def semantic_class_counts(confusion: np.ndarray, evaluated: np.ndarray) -> np.ndarray:
    """Per evaluated class (TP, FP, FN) from label-id confusion matrices [..., gt, pred], cityscapesscripts' rules.

    FN is the whole gt row minus TP (predicting an ignored id is an error); FP is the column sum over gt rows of
    evaluated ids other than the class (predictions on ignored gt pixels are free). Summing these counts over
    images and taking TP / (TP + FP + FN) gives exactly the dataset-level class IoU.

    Args:
        confusion: (..., n_ids, n_ids) integer counts (one matrix per image, per band, ...).
        evaluated: (n_ids,) bool, the label table's evaluated ids.

    Returns:
        (..., n_classes, 3) int64, classes in label-id order.
    """
    ids = np.flatnonzero(np.asarray(evaluated, dtype=bool))
    confusion = np.asarray(confusion, dtype=np.int64)
    rows = confusion[..., ids, :]  # gt rows of evaluated ids
    true_positive = np.diagonal(rows[..., :, ids], axis1=-2, axis2=-1)
    false_negative = rows.sum(axis=-1) - true_positive
    false_positive = rows[..., :, ids].sum(axis=-2) - true_positive
    return np.stack([true_positive, false_positive, false_negative], axis=-1)


def mean_iou(counts: np.ndarray) -> np.ndarray:
    """Mean class IoU of (..., n_classes, 3) (TP, FP, FN) counts; classes with TP + FP + FN = 0 are left out."""
    counts = np.asarray(counts, dtype=np.float64)
    union = counts.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, counts[..., 0] / np.where(union > 0, union, 1.0), np.nan)
    return _nanmean_last(iou)


def panoptic_quality(counts: np.ndarray) -> np.ndarray:
    """PQ of (..., n_classes, 4) (IoU sum, TP, FP, FN) counts: mean over classes with TP + FP + FN > 0."""
    counts = np.asarray(counts, dtype=np.float64)
    iou_sum, tp, fp, fn = np.moveaxis(counts, -1, 0)
    present = (tp + fp + fn) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        pq = np.where(present, iou_sum / np.where(present, tp + 0.5 * fp + 0.5 * fn, 1.0), np.nan)
    return _nanmean_last(pq)


def _nanmean_last(values: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(values)
    total = np.where(valid, values, 0.0).sum(axis=-1)
    count = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# --- resampling ---------------------------------------------------------------------------------------


def resample_multiplicities(n_items: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(n_resamples, n_items) int64: how often each item occurs in each bootstrap resample.

    Resample r draws `n_items` indices uniformly with replacement from `numpy.random.default_rng(seed)`; row r
    counts them. Fixed seed: the same images, and so the same interval, on every run.
    """
    if n_items < 1:
        raise ValueError("the bootstrap needs at least one image")
    draws = np.random.default_rng(seed).integers(0, n_items, size=(n_resamples, n_items))
    offsets = (np.arange(n_resamples) * n_items)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n_resamples * n_items).reshape(n_resamples, n_items)


def _scores(per_image: np.ndarray, weights: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Score of each weighting: `per_image` (seeds, images, ...) summed over images with `weights` (R, images),
    scored per seed, averaged over seeds -> (R,)."""
    seeds, images = per_image.shape[:2]
    flat = per_image.reshape(seeds, images, -1).astype(np.float64)
    sums = np.einsum("rn,snk->rsk", weights.astype(np.float64), flat)  # (R, seeds, K)
    scores = statistic(sums.reshape(weights.shape[0], seeds, *per_image.shape[2:]))  # (R, seeds)
    return np.asarray(scores, dtype=np.float64).mean(axis=1)


def _with_seed_axis(per_image: np.ndarray, item_ndim: int) -> np.ndarray:
    per_image = np.asarray(per_image)
    if per_image.ndim == item_ndim + 1:
        return per_image[None]
    if per_image.ndim != item_ndim + 2:
        raise ValueError(f"per-image statistics must be (images, ...) or (seeds, images, ...), got shape {per_image.shape}")
    return per_image


def paired_bootstrap(
    baseline: np.ndarray,
    row: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    item_ndim: int,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """The difference `statistic(row) - statistic(baseline)` with its paired percentile bootstrap interval.

    Args:
        baseline, row: per-image statistics, (images, *item) or (seeds, images, *item), the images in the same
            order in both (the same validation images); the seed counts may differ.
        statistic: maps summed statistics (..., *item) to scores (...), e.g. `mean_iou` for (n_classes, 3).
        item_ndim: len(item), the number of trailing axes one image's statistics have.

    The estimate is the difference on all images (mean over seeds); the interval holds the central
    `confidence` fraction of the resampled differences.
    """
    baseline = _with_seed_axis(baseline, item_ndim)
    row = _with_seed_axis(row, item_ndim)
    images = baseline.shape[1]
    if row.shape[1] != images or row.shape[2:] != baseline.shape[2:]:
        raise ValueError(f"paired bootstrap: per-image statistics of shapes {baseline.shape} and {row.shape} do not pair up")
    everything = np.ones((1, images), dtype=np.int64)
    estimate = float(_scores(row, everything, statistic)[0] - _scores(baseline, everything, statistic)[0])
    weights = resample_multiplicities(images, n_resamples, seed)
    differences = _scores(row, weights, statistic) - _scores(baseline, weights, statistic)
    differences = differences[~np.isnan(differences)]
    alpha = 1.0 - confidence
    if differences.size == 0:
        low = high = math.nan
    else:
        low, high = (float(v) for v in np.quantile(differences, [alpha / 2, 1 - alpha / 2]))
    return Interval(estimate, low, high, confidence, f"paired bootstrap over {images} images, {n_resamples} resamples")


def t_interval(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Mean of `values` (e.g. one score per seed) with its Student-t interval; NaN bounds with fewer than 2."""
    from scipy import stats

    data = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if data.size == 0:
        return Interval(math.nan, math.nan, math.nan, confidence, "t over 0 seeds")
    mean = float(data.mean())
    if data.size < 2:
        return Interval(mean, math.nan, math.nan, confidence, "t over 1 seed")
    half = float(stats.t.ppf(0.5 + confidence / 2, data.size - 1) * data.std(ddof=1) / math.sqrt(data.size))
    return Interval(mean, mean - half, mean + half, confidence, f"t over {data.size} seeds")


def standard_deviation(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof 1) of the non-NaN values; NaN with fewer than 2."""
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    return float(data.std(ddof=1)) if data.size >= 2 else math.nan
