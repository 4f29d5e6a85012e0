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


Scorer = Callable[[np.ndarray], np.ndarray]  # image multiplicities (R, images) -> one score per resample (R,)


def summed_scorer(per_image: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], item_ndim: int) -> Scorer:
    """A scorer for statistics that add up over images: `per_image` (images, *item) or (seeds, images, *item) is
    summed over images with each resample's multiplicities, scored per seed by `statistic` (..., *item) -> (...),
    and averaged over seeds (the reported value is the mean over seeds)."""
    per_image = np.asarray(per_image)
    if per_image.ndim == item_ndim + 1:
        per_image = per_image[None]
    if per_image.ndim != item_ndim + 2:
        raise ValueError(f"per-image statistics must be (images, ...) or (seeds, images, ...), got shape {per_image.shape}")
    seeds, images = per_image.shape[:2]
    flat = per_image.reshape(seeds, images, -1).astype(np.float64)

    def score(weights: np.ndarray) -> np.ndarray:
        if weights.shape[1] != images:
            raise ValueError(f"paired bootstrap: {weights.shape[1]} images resampled, the statistics have {images}")
        sums = np.einsum("rn,snk->rsk", weights.astype(np.float64), flat)  # (R, seeds, K)
        scores = statistic(sums.reshape(weights.shape[0], seeds, *per_image.shape[2:]))  # (R, seeds)
        return np.asarray(scores, dtype=np.float64).mean(axis=1)

    score.n_images = images
    return score


def bootstrap_difference(
    baseline: Scorer,
    row: Scorer,
    n_images: int,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """`row - baseline` on all `n_images` images, with the percentile interval of the same difference over
    `n_resamples` paired resamples (both scorers see the same resampled images)."""
    everything = np.ones((1, n_images), dtype=np.int64)
    estimate = float(row(everything)[0] - baseline(everything)[0])
    weights = resample_multiplicities(n_images, n_resamples, seed)
    differences = row(weights) - baseline(weights)
    differences = differences[~np.isnan(differences)]
    alpha = 1.0 - confidence
    if differences.size == 0:
        low = high = math.nan
    else:
        low, high = (float(v) for v in np.quantile(differences, [alpha / 2, 1 - alpha / 2]))
    return Interval(estimate, low, high, confidence, f"paired bootstrap over {n_images} images, {n_resamples} resamples")


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
        baseline, row: per-image statistics that add up over images, (images, *item) or (seeds, images, *item),
            the images in the same order in both (the same validation images); the seed counts may differ.
        statistic: maps summed statistics (..., *item) to scores (...), e.g. `mean_iou` for (n_classes, 3).
        item_ndim: len(item), the number of trailing axes one image's statistics have.
    """
    baseline_score = summed_scorer(baseline, statistic, item_ndim)
    row_score = summed_scorer(row, statistic, item_ndim)
    if row_score.n_images != baseline_score.n_images or np.shape(row)[-item_ndim:] != np.shape(baseline)[-item_ndim:]:
        raise ValueError(f"paired bootstrap: per-image statistics of shapes {np.shape(baseline)} and {np.shape(row)} do not pair up")
    return bootstrap_difference(baseline_score, row_score, baseline_score.n_images, n_resamples, confidence, seed)


# --- COCO AP on a resample of the images -----------------------------------------------------------------


@dataclass(frozen=True)
class CocoMatches:
    """What COCOeval's `evaluate()` decided per image (area "all", at most 100 detections per image), enough to
    recompute its AP on any multiset of the images.

    `per_category` holds, for each category with ground truth or detections: `image` (D,) the image index of
    each detection, sorted as COCOeval's `accumulate` sorts them (score descending, stable over image order);
    `tp` and `fp` (T, D) bool per IoU threshold (detections matched to ignored ground truth are neither);
    `gt` (images,) the number of non-ignored ground-truth objects per image.
    """

    image_ids: tuple
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    per_category: tuple[dict, ...]


def coco_matches(cocoeval) -> CocoMatches:
    """The per-image matches of a pycocotools `COCOeval` on which `evaluate()` has run."""
    params = cocoeval.params
    images = len(params.imgIds)
    area_all = list(params.areaRngLbl).index("all")
    max_det = max(params.maxDets)
    per_area = images
    per_category_block = len(params.areaRng) * images
    categories = []
    for k in range(len(params.catIds) if params.useCats else 1):
        evaluated = [(i, cocoeval.evalImgs[k * per_category_block + area_all * per_area + i]) for i in range(images)]
        evaluated = [(i, e) for i, e in evaluated if e is not None]
        if not evaluated:
            continue
        gt = np.zeros(images, np.int64)
        for i, e in evaluated:
            gt[i] = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
        scores = np.concatenate([np.asarray(e["dtScores"][:max_det], dtype=np.float64) for _, e in evaluated])
        order = np.argsort(-scores, kind="mergesort")  # COCOeval.accumulate's order
        image = np.concatenate([np.full(len(e["dtScores"][:max_det]), i, np.int64) for i, e in evaluated])[order]
        matched = np.concatenate([np.asarray(e["dtMatches"])[:, :max_det] for _, e in evaluated], axis=1)[:, order]
        ignored = np.concatenate([np.asarray(e["dtIgnore"])[:, :max_det] for _, e in evaluated], axis=1)[:, order].astype(bool)
        categories.append({"image": image, "tp": (matched != 0) & ~ignored, "fp": (matched == 0) & ~ignored, "gt": gt})
    return CocoMatches(tuple(params.imgIds), np.asarray(params.iouThrs), np.asarray(params.recThrs), tuple(categories))


def coco_average_precision(matches: CocoMatches, weights: np.ndarray, iou: float | None = None) -> np.ndarray:
    """COCO AP (IoU 0.50:0.95, or only `iou`, e.g. 0.5 for AP50) of each image multiset `weights` (R, images).

    It follows COCOeval.accumulate / summarize with every detection of image i counted weights[r, i] times:
    cumulative TP / FP, recall = TP / number of non-ignored ground truth, precision = TP / (TP + FP + eps), the
    precision envelope, precision at 101 recall points, mean over thresholds, points and categories with ground
    truth. A repeated detection is one step of weight w instead of w equal steps; that leaves every sampled
    precision unchanged (the envelope of the skipped points equals that of the step's end).
    """
    weights = np.asarray(weights, dtype=np.float64)
    resamples = weights.shape[0]
    thresholds = range(len(matches.iou_thresholds)) if iou is None else [int(np.argmin(np.abs(matches.iou_thresholds - iou)))]
    recall_points = matches.recall_thresholds
    total = np.zeros(resamples)
    count = np.zeros(resamples)
    rows = np.arange(resamples)[:, None]
    for category in matches.per_category:
        ground_truth = weights @ category["gt"]  # (R,)
        present = ground_truth > 0
        detections = category["image"].size
        detection_weights = weights[:, category["image"]]  # (R, D)
        for t in thresholds:
            if detections == 0:
                sampled = np.zeros((resamples, recall_points.size))
            else:
                tp = np.cumsum(detection_weights * category["tp"][t], axis=1)
                fp = np.cumsum(detection_weights * category["fp"][t], axis=1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    recall = tp / ground_truth[:, None]
                precision = tp / (fp + tp + np.spacing(1))
                envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
                # one searchsorted for all resamples: row r's recalls (in [0, 1]) shifted by 2r stay sorted
                shifted = np.where(np.isnan(recall), 0.0, recall) + 2.0 * rows
                found = np.searchsorted(shifted.ravel(), (recall_points[None, :] + 2.0 * rows).ravel(), side="left")
                found = found.reshape(resamples, -1) - rows * detections
                inside = found < detections
                sampled = np.where(inside, envelope[rows, np.minimum(found, detections - 1)], 0.0)
            total += np.where(present, sampled.sum(axis=1), 0.0)
            count += np.where(present, recall_points.size, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def coco_scorer(matches: CocoMatches | Sequence[CocoMatches], iou: float | None = None) -> Scorer:
    """A scorer of COCO AP (mean over seeds when given one `CocoMatches` per seed) for `bootstrap_difference`."""
    runs = [matches] if isinstance(matches, CocoMatches) else list(matches)
    images = {len(run.image_ids) for run in runs}
    if len(images) != 1 or len({run.image_ids for run in runs}) != 1:
        raise ValueError("COCO matches of different image sets cannot be paired")

    def score(weights: np.ndarray) -> np.ndarray:
        return np.mean([coco_average_precision(run, weights, iou) for run in runs], axis=0)

    score.n_images = images.pop()
    return score


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


def matches_to_arrays(matches: CocoMatches, prefix: str) -> dict[str, np.ndarray]:
    """`matches` as flat numpy arrays under `prefix` (e.g. "bbox_"), for an npz file: the categories'
    detections are concatenated, `<prefix>detections` holds each category's count."""
    categories = matches.per_category
    thresholds = len(matches.iou_thresholds)
    return {
        f"{prefix}image_ids": np.asarray(matches.image_ids),
        f"{prefix}iou_thresholds": np.asarray(matches.iou_thresholds, np.float64),
        f"{prefix}recall_thresholds": np.asarray(matches.recall_thresholds, np.float64),
        f"{prefix}detections": np.asarray([c["image"].size for c in categories], np.int64),
        f"{prefix}image": np.concatenate([c["image"] for c in categories] or [np.zeros(0, np.int64)]).astype(np.int64),
        f"{prefix}tp": np.concatenate([c["tp"] for c in categories], axis=1) if categories else np.zeros((thresholds, 0), bool),
        f"{prefix}fp": np.concatenate([c["fp"] for c in categories], axis=1) if categories else np.zeros((thresholds, 0), bool),
        f"{prefix}gt": np.stack([c["gt"] for c in categories]) if categories else np.zeros((0, len(matches.image_ids)), np.int64),
    }


def matches_from_arrays(arrays, prefix: str) -> CocoMatches:
    """The inverse of `matches_to_arrays`."""
    bounds = np.concatenate([[0], np.cumsum(arrays[f"{prefix}detections"])])
    categories = tuple(
        {"image": arrays[f"{prefix}image"][start:end], "tp": arrays[f"{prefix}tp"][:, start:end],
         "fp": arrays[f"{prefix}fp"][:, start:end], "gt": arrays[f"{prefix}gt"][k]}
        for k, (start, end) in enumerate(zip(bounds[:-1], bounds[1:]))
    )
    return CocoMatches(tuple(arrays[f"{prefix}image_ids"].tolist()), arrays[f"{prefix}iou_thresholds"],
                       arrays[f"{prefix}recall_thresholds"], categories)
