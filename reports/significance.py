"""Confidence intervals for a suite's table: each row against the baseline, and which row is significantly best.

Per-image statistics stored with each result (bench.evaluation.loop `statistics()`; semantic per-class
(TP, FP, FN) for the full image and each boundary band, panoptic per-category (IoU sum, TP, FP, FN)) give every
metric on any resample of the images (alignbench.metrics.statistics):
- `difference`: row minus baseline, with the 95% paired percentile bootstrap interval over images (the same
  resampled images for both rows, 1000 resamples, generator seed 0); with several seeds a resample's score is
  the mean over the seeds of that resample's per-seed scores.
- `seed_interval`: the per-seed differences (row - baseline, seed by seed) with their Student-t interval.
- `significantly_best`: the row whose bootstrap interval against every other row lies entirely on the better
  side of zero; None when no row is.
COCO AP, AP50 and AP75 (boxes, masks) are recomputed from COCOeval's stored per-image matches
(metrics.statistics.coco_average_precision). Metrics without per-image statistics (APs / APm / APl, SQ, RQ,
iIoU, parameters, GMACs, speed) get no bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from alignbench.metrics import statistics as stats
from alignbench.metrics.vocabulary import METRICS

METHOD_FOOTNOTE = (
    "Differences to {baseline}: 95% paired bootstrap interval over the {images} evaluation images (percentile, "
    "1000 resamples, generator seed 0, the same images for both rows; with several seeds each resample scores the "
    "mean over seeds), and over seeds the mean difference with its Student-t 95% interval. Bold: significantly "
    "best (its bootstrap interval against every other row excludes zero); †: the interval against {baseline} "
    "includes zero (not significant)."
)

_PANOPTIC = {"PQ": None, "PQ_th": True, "PQ_st": False}
_COCO_IOU = {"AP": None, "AP50": 0.5, "AP75": 0.75}


def _coco_metric(metric: str) -> tuple[str, float | None] | None:
    """("bbox" | "segm", IoU threshold or None for 0.50:0.95) of AP / AP50 / AP75 keys, else None."""
    name, _, iou_type = metric.rpartition("_")
    return (iou_type, _COCO_IOU[name]) if name in _COCO_IOU and iou_type in ("bbox", "segm") else None


def supports(metric: str) -> bool:
    """Whether per-image statistics give `metric` on a resample."""
    return (metric == "mIoU" or metric.startswith("band_") and metric != "band_mean" or metric in _PANOPTIC
            or _coco_metric(metric) is not None)


def _semantic_statistic(metric: str, bands: Sequence[int]):
    """(plane index into the (1 + bands, classes, 3) counts, statistic) for mIoU or band_<w>."""
    if metric == "mIoU":
        return 0
    width = int(metric.split("_")[1])
    if width not in list(bands):
        raise KeyError(f"band {width} px was not evaluated (bands {list(bands)})")
    return 1 + list(bands).index(width)


def per_image(metric: str, runs: Sequence[Mapping[str, np.ndarray]]) -> tuple[np.ndarray, callable, int]:
    """(statistics (seeds, images, *item), statistic, item_ndim) of `metric` from each seed's stored arrays."""
    kind = str(runs[0]["kind"])
    if kind == "semantic" and metric in ("mIoU",) or kind == "semantic" and metric.startswith("band_"):
        plane = _semantic_statistic(metric, runs[0]["bands"])
        return np.stack([run["counts"][:, plane] for run in runs]), stats.mean_iou, 2
    if kind == "panoptic" and metric in _PANOPTIC:
        things = _PANOPTIC[metric]
        counts = np.stack([run["counts"] for run in runs])
        if things is not None:
            counts = counts[:, :, runs[0]["isthing"] == things]
        return counts, stats.panoptic_quality, 2
    raise KeyError(f"no per-image statistics for {metric} in {kind} results")


def _scorer(metric: str, runs: Sequence[Mapping[str, np.ndarray]]):
    coco = _coco_metric(metric)
    if coco is not None:
        iou_type, iou = coco
        if f"{iou_type}_image_ids" not in runs[0]:
            raise KeyError(f"no per-image matches for {metric}")
        return stats.coco_scorer([stats.matches_from_arrays(run, f"{iou_type}_") for run in runs], iou)
    values, statistic, item_ndim = per_image(metric, runs)
    return stats.summed_scorer(values, statistic, item_ndim)


def _same_images(first: Sequence[Mapping], second: Sequence[Mapping]) -> bool:
    return all(np.array_equal(a["index"], b["index"]) for a in first for b in second)


def difference(metric: str, baseline: Sequence[Mapping], row: Sequence[Mapping]) -> stats.Interval | None:
    """Row minus baseline in display units (percent) with its paired bootstrap interval; None when the
    statistics are missing or the two rows were not evaluated on the same images."""
    if not baseline or not row or not supports(metric) or not _same_images(baseline, row):
        return None
    try:
        interval = stats.bootstrap_difference(_scorer(metric, baseline), _scorer(metric, row), len(baseline[0]["index"]))
    except (KeyError, ValueError):  # no statistics for this metric, or image sets that do not pair
        return None
    scale = 100.0 if METRICS[metric].fraction else 1.0
    return stats.Interval(interval.estimate * scale, interval.low * scale, interval.high * scale, interval.confidence, interval.method)


def seed_interval(baseline: Mapping[int, float], row: Mapping[int, float], metric: str) -> stats.Interval | None:
    """Mean over the seeds both rows ran of (row - baseline), with its t-interval (display units)."""
    seeds = sorted(set(baseline) & set(row))
    values = [row[s] - baseline[s] for s in seeds if not (math.isnan(row[s]) or math.isnan(baseline[s]))]
    if not values:
        return None
    scale = 100.0 if METRICS[metric].fraction else 1.0
    interval = stats.t_interval([v * scale for v in values])
    return interval


def significantly_best(metric: str, runs: Mapping[str, Sequence[Mapping]]) -> str | None:
    """The row significantly better than every other row (bootstrap interval excluding zero), else None."""
    rows = [key for key, value in runs.items() if value]
    if len(rows) < 2 or len(rows) != len(runs):
        return None
    higher = METRICS[metric].higher_is_better
    for candidate in rows:
        wins = True
        for other in rows:
            if other == candidate:
                continue
            interval = difference(metric, runs[other], runs[candidate])  # candidate - other
            if interval is None or not interval.defined or not ((interval.low > 0) if higher else (interval.high < 0)):
                wins = False
                break
        if wins:
            return candidate
    return None


def verdict(metric: str, interval: stats.Interval | None) -> str:
    """Whether a row beats the baseline on `metric` with the interval's confidence: "yes" (the whole interval on
    the better side of zero), "worse" (on the worse side), "no (interval crosses 0)", or "not measured"."""
    if interval is None or not interval.defined:
        return "not measured"
    better = interval.low > 0 if METRICS[metric].higher_is_better else interval.high < 0
    worse = interval.high < 0 if METRICS[metric].higher_is_better else interval.low > 0
    return "yes" if better else "worse" if worse else "no (interval crosses 0)"


def interval_text(interval: stats.Interval | None, digits: int) -> str:
    """"+1.2 [0.4, 2.0]" (a dagger when the interval includes zero), "-" without one."""
    if interval is None or math.isnan(interval.estimate):
        return "-"
    if not interval.defined:
        return f"{interval.estimate:+.{digits}f}"
    dagger = "" if interval.excludes_zero else "†"
    return f"{interval.estimate:+.{digits}f} [{interval.low:+.{digits}f}, {interval.high:+.{digits}f}]{dagger}"
