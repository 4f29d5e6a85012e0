"""Cityscapes semantic metrics as a streaming, mergeable accumulator.

The scores are those of cityscapesscripts 2.3.0 `evaluateImgLists` (evalPixelLevelSemanticLabeling.py):

* One confusion matrix over the dataset, indexed [gt label id, predicted label id].
* Class IoU = TP / (TP + FP + FN): FN is the whole gt row minus TP (predicting an ignored id is an
  error), FP is the column sum over gt rows of evaluated ids other than the class (predictions on
  ignored gt pixels are free). TP + FP + FN = 0 gives NaN, left out of every mean; a class absent from
  the gt but predicted scores 0.
* iIoU: only instance ids > 1000 of evaluated classes. Each instance weights its TP and FN pixels by
  avgClassSize[class] / instance size; FP is unweighted and comes from the confusion matrix.
* Category IoU: a category's ids form one class (confusion inside a category is no error); FP counts
  only gt rows of evaluated ids outside the category. Category iIoU uses the instance categories
  (human, vehicle), whose ids include ignored ones (caravan, trailer), as cityscapesscripts does.
* Means run over the class (category) list in label order, skipping NaN.

Weighted instance terms are summed with `math.fsum` (exactly rounded), so results do not depend on image
order or on how shards are merged; they agree with cityscapesscripts' running sum to ~1e-15.

Boundary-band mIoU (definition in metrics.boundary) accumulates one extra confusion matrix per band; the
band widths are scaled to each map's size when a reference size is given (`band_reference_size`), and every
result says which widths were used and what share of the evaluated pixels each band holds: a band that holds
most of the image measures the image, not its boundaries.

Any label table of metrics.labels works: Cityscapes' (label ids 0..33, with iIoU and category scores) or a
plain class list (ids 0..C-1 and one ignored id), which defines no iIoU and no category scores; its results
leave those keys out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from alignbench.metrics import boundary as bands_module
from alignbench.metrics.labels import CITYSCAPES, LabelSpec


class InvalidMapError(ValueError):
    """A map that cannot be evaluated; `which` is "prediction", "ground truth" or "instances"."""

    def __init__(self, which: str, message: str) -> None:
        super().__init__(message)
        self.which = which


_INSTANCE_OFFSET = 1000  # Cityscapes instanceIds: label_id * 1000 + k; only ids > 1000 are instances
_MAX_INSTANCE_ID = 65535


@dataclass
class SemanticResult:
    """Scores of one evaluation; fractions in [0, 1], NaN where a score is undefined."""

    class_iou: dict[str, float]
    class_iiou: dict[str, float]
    category_iou: dict[str, float]
    category_iiou: dict[str, float]
    miou: float
    iiou: float
    iou_category: float
    iiou_category: float
    boundary_miou: dict[int, float]
    boundary_class_iou: dict[int, dict[str, float]]
    n_images: int
    confusion: np.ndarray = field(repr=False)
    boundary_pixel_share: dict[int, float] = field(default_factory=dict)  # band -> its pixels / evaluated pixels
    boundary_width_px: dict[int, tuple[int, ...]] = field(default_factory=dict)  # band -> widths used on the maps
    defines_instance_scores: bool = True  # the label table has instance classes: iIoU is defined
    defines_categories: bool = True  # the label table has categories: category scores are defined

    def to_json(self) -> dict[str, Any]:
        """The JSON contract of `alignbench eval semantic` (README "Semantic evaluation"); NaN becomes null.
        iIoU and category keys appear only for label tables that define them (Cityscapes)."""
        output: dict[str, Any] = {"mIoU": self.miou}
        if self.defines_instance_scores:
            output["iIoU"] = self.iiou
        if self.defines_categories:
            output["IoU_category"] = self.iou_category
            if self.defines_instance_scores:
                output["iIoU_category"] = self.iiou_category
        output["class_IoU"] = dict(self.class_iou)
        if self.defines_instance_scores:
            output["class_iIoU"] = dict(self.class_iiou)
        if self.defines_categories:
            output["category_IoU"] = dict(self.category_iou)
            if self.defines_instance_scores:
                output["category_iIoU"] = dict(self.category_iiou)
        output["boundary_mIoU"] = {str(width): value for width, value in self.boundary_miou.items()}
        output["boundary_class_IoU"] = {str(width): dict(values) for width, values in self.boundary_class_iou.items()}
        output["boundary_pixel_share"] = {str(width): value for width, value in self.boundary_pixel_share.items()}
        output["boundary_width_px"] = {str(width): list(used) for width, used in self.boundary_width_px.items()}
        output["n_images"] = self.n_images
        return output


class SemanticAccumulator:
    """Streaming Cityscapes semantic evaluation: `update` per image, `merge` shards, `compute` scores.

    Args:
        spec: the label table (Cityscapes by default).
        bands: boundary band widths in pixels; empty for none.
        pred_ids: "label" when predictions hold the table's label ids (Cityscapes 0..33), "train" for train
            ids (Cityscapes 0..18, 255).
        instance_boundaries: also treat instance outlines as boundaries for the bands.
        band_reference_size: (H, W) at which the band widths are stated; maps of another size get scaled widths
            (metrics.boundary.scaled_widths). None: the widths are pixels of each map as given.

    `update` takes numpy arrays or torch tensors; CUDA tensors are processed on their device and only
    the small per-image counts come back to the host. The state is plain numpy, so accumulators pickle
    (for worker processes) and merge exactly.
    """

    def __init__(
        self,
        spec: LabelSpec = CITYSCAPES,
        bands: Sequence[int] = bands_module.DEFAULT_BANDS,
        pred_ids: str = "label",
        instance_boundaries: bool = False,
        band_reference_size: tuple[int, int] | None = None,
    ) -> None:
        if pred_ids not in ("label", "train"):
            raise ValueError(f"pred_ids must be 'label' or 'train', got {pred_ids!r}")
        self.spec = spec
        self.bands = bands_module.validate_bands(bands) if len(bands) else ()
        self.pred_ids = pred_ids
        self.instance_boundaries = instance_boundaries
        self.band_reference_size = tuple(band_reference_size) if band_reference_size is not None else None
        self.reset()

    # --- state ---------------------------------------------------------------------------------------

    def reset(self) -> None:
        n = self.spec.num_ids
        self.confusion = np.zeros((n, n), dtype=np.int64)
        self.band_confusion = np.zeros((len(self.bands), n, n), dtype=np.int64)
        # one row per gt instance: class id, weighted TP, weighted FN, weighted category TP / FN
        self._instance_rows: list[np.ndarray] = []
        self.n_images = 0
        self.widths_used: list[set[int]] = [set() for _ in self.bands]  # per band: the scaled widths applied

    def merge(self, other: SemanticAccumulator) -> SemanticAccumulator:
        """Add another accumulator's state (same label table and bands) to this one."""
        if other.spec is not self.spec and other.spec.names != self.spec.names:
            raise ValueError("cannot merge accumulators over different label tables")
        if other.bands != self.bands or other.band_reference_size != self.band_reference_size:
            raise ValueError(f"cannot merge accumulators with bands {self.bands} and {other.bands} "
                             f"(stated at {self.band_reference_size} and {other.band_reference_size})")
        for mine, theirs in zip(self.widths_used, other.widths_used):
            mine |= theirs
        self.confusion += other.confusion
        self.band_confusion += other.band_confusion
        self._instance_rows.extend(other._instance_rows)
        self.n_images += other.n_images
        return self

    # --- update --------------------------------------------------------------------------------------

    def update(self, pred: Any, gt: Any, instances: Any = None) -> None:
        """Add one image: `pred` and `gt` are HxW integer maps, `instances` the HxW instanceIds map.

        Raises ValueError on a shape mismatch or ids outside the table (label ids 0..33; train ids
        0..18 and 255; instance ids whose class has no instances).
        """
        if _is_torch(pred) or _is_torch(gt) or _is_torch(instances):
            if all(not _is_torch(x) or x.device.type == "cpu" for x in (pred, gt, instances) if x is not None):
                pred, gt = _to_numpy(pred), _to_numpy(gt)
                instances = None if instances is None else _to_numpy(instances)
            else:
                self._update_torch(pred, gt, instances)
                return
        self._update_numpy(np.asarray(pred), np.asarray(gt), None if instances is None else np.asarray(instances))

    def _check_shapes(self, pred_shape, gt_shape, instance_shape) -> None:
        if len(gt_shape) != 2:
            raise InvalidMapError("ground truth", f"ground truth must be a 2-D map, got shape {tuple(gt_shape)}")
        if tuple(pred_shape) != tuple(gt_shape):
            raise InvalidMapError(
                "prediction", f"prediction shape {tuple(pred_shape)} differs from ground truth shape {tuple(gt_shape)}"
            )
        if instance_shape is not None and tuple(instance_shape) != tuple(gt_shape):
            raise InvalidMapError(
                "instances", f"instance map shape {tuple(instance_shape)} differs from ground truth shape {tuple(gt_shape)}"
            )

    def _check_range(self, which: str, low: int, high: int, limit: int) -> None:
        if low < 0 or high >= limit:
            bad = low if low < 0 else high
            kind = "train id" if which == "prediction" and self.pred_ids == "train" else "label id"
            raise InvalidMapError(which, f"{which} has {kind} {bad} outside 0..{limit - 1}")

    def _update_numpy(self, pred: np.ndarray, gt: np.ndarray, instances: np.ndarray | None) -> None:
        spec = self.spec
        n = spec.num_ids
        self._check_shapes(pred.shape, gt.shape, None if instances is None else instances.shape)
        if not np.issubdtype(gt.dtype, np.integer):
            raise InvalidMapError("ground truth", f"ground truth must hold integers, got {gt.dtype}")
        if not np.issubdtype(pred.dtype, np.integer):
            raise InvalidMapError("prediction", f"prediction must hold integers, got {pred.dtype}")
        gt = self._as_uint8("ground truth", gt, n)
        pred = self._prediction_to_label_ids_numpy(pred)
        widths, band_of = self._widths_for(gt.shape)
        if widths:
            boundary = bands_module.boundary_mask(
                gt, spec.evaluated, instances if self.instance_boundaries else None
            )
            levels = bands_module.band_levels(boundary, widths)
        else:
            levels = np.zeros_like(gt)
        counts = _joint_histogram(gt, pred, levels, n, len(widths) + 1)  # [gt, pred, level]
        self.confusion += counts.sum(axis=2)
        if widths:
            # only evaluated pixels belong to bands: the rows of ignored gt ids are left out
            in_bands = counts[:, :, : len(widths)] * spec.evaluated[:, None, None]
            self.band_confusion += np.cumsum(np.moveaxis(in_bands, 2, 0), axis=0)[band_of]
        if instances is not None:
            self._add_instances_numpy(pred, instances)
        self.n_images += 1

    def _widths_for(self, size: tuple[int, int]) -> tuple[tuple[int, ...], list[int]]:
        """The distinct band widths for a map of `size` (scaled, ascending) and, per band, the index of its width
        among them; records the widths used."""
        scaled = bands_module.scaled_widths(self.bands, size, self.band_reference_size)
        widths = tuple(sorted(set(scaled)))
        for used, width in zip(self.widths_used, scaled):
            used.add(width)
        return widths, [widths.index(width) for width in scaled]

    def _as_uint8(self, which: str, values: np.ndarray, limit: int) -> np.ndarray:
        """Range-check a map against 0..limit-1 and return it as contiguous uint8."""
        high = int(values.max()) if values.size else 0
        low = 0 if values.dtype.kind == "u" or not values.size else int(values.min())
        self._check_range(which, low, high, limit)
        return np.ascontiguousarray(values, dtype=np.uint8)

    def _prediction_to_label_ids_numpy(self, pred: np.ndarray) -> np.ndarray:
        if self.pred_ids == "label":
            return self._as_uint8("prediction", pred, self.spec.num_ids)
        pred = self._as_uint8("prediction", pred, 256)
        valid = self.spec.valid_train_ids
        present = np.flatnonzero(cv2.calcHist([pred], [0], None, [256], [0, 256]).ravel())
        invalid = present[~valid[present]]
        if invalid.size:
            raise InvalidMapError(
                "prediction", f"prediction has train id {int(invalid[0])} outside 0..{self.spec.num_train_ids - 1} and 255"
            )
        return cv2.LUT(pred, self.spec.label_id_of_train_id)

    def _add_instances_numpy(self, pred: np.ndarray, instances: np.ndarray) -> None:
        """Per-instance pixel counts from one joint histogram of (instance, predicted id) over the
        instance pixels only, so that the cost does not grow with the number of instances (the
        reference makes one pass over the image per instance)."""
        if not np.issubdtype(instances.dtype, np.integer):
            raise InvalidMapError("instances", f"instance map must hold integers, got {instances.dtype}")
        n = self.spec.num_ids
        flat = instances.ravel()
        selected = np.flatnonzero(flat > _INSTANCE_OFFSET)
        if not selected.size:
            return
        instance_ids = flat[selected]
        highest = int(instance_ids.max())
        if highest > _MAX_INSTANCE_ID:
            raise InvalidMapError("instances", f"instance map has id {highest} above {_MAX_INSTANCE_ID}")
        present = np.flatnonzero(np.bincount(instance_ids))
        compact = np.zeros(highest + 1, np.intp)
        compact[present] = np.arange(len(present))
        pair = compact[instance_ids]
        pair *= n
        pair += pred.ravel()[selected]
        joint = np.bincount(pair, minlength=len(present) * n).reshape(len(present), n)
        class_ids = np.minimum(present // _INSTANCE_OFFSET, n - 1)  # out-of-table classes are rejected below
        rows = np.arange(len(present))
        hits = joint[rows, class_ids]
        category_hits = (joint * self.spec.same_instance_category[class_ids]).sum(axis=1)
        self._add_instance_rows(present, joint.sum(axis=1), hits, category_hits)

    def _add_instance_rows(
        self, instance_ids: np.ndarray, sizes: np.ndarray, hits: np.ndarray, category_hits: np.ndarray
    ) -> None:
        """Weighted TP / FN terms per gt instance, with the arithmetic of cityscapesscripts' evaluatePair."""
        spec = self.spec
        class_ids = instance_ids // _INSTANCE_OFFSET
        if class_ids.size and int(class_ids.max()) >= spec.num_ids:
            bad = int(instance_ids[class_ids >= spec.num_ids][0])
            raise InvalidMapError(
                "instances", f"instance map has id {bad} whose class {bad // _INSTANCE_OFFSET} is outside 0..{spec.num_ids - 1}"
            )
        keep = spec.evaluated[class_ids]
        without_instances = keep & ~spec.has_instances[class_ids]
        if without_instances.any():
            bad = int(instance_ids[without_instances][0])
            raise InvalidMapError(
                "instances", f"instance map has id {bad} but class {spec.names[bad // _INSTANCE_OFFSET]!r} has no instances"
            )
        class_ids, sizes = class_ids[keep], sizes[keep].astype(np.float64)
        hits, category_hits = hits[keep].astype(np.float64), category_hits[keep].astype(np.float64)
        if not class_ids.size:
            return
        weight = spec.avg_size_by_id[class_ids] / sizes
        rows = np.stack(
            [
                class_ids.astype(np.float64),
                hits * weight,
                (sizes - hits) * weight,
                category_hits * weight,
                (sizes - category_hits) * weight,
            ],
            axis=1,
        )
        self._instance_rows.append(rows)

    def _update_torch(self, pred, gt, instances) -> None:
        import torch

        spec = self.spec
        n = spec.num_ids
        device = gt.device if _is_torch(gt) else pred.device
        pred = torch.as_tensor(pred, device=device)
        gt = torch.as_tensor(gt, device=device)
        self._check_shapes(pred.shape, gt.shape, None if instances is None else instances.shape)
        if gt.is_floating_point():
            raise InvalidMapError("ground truth", f"ground truth must hold integers, got {gt.dtype}")
        if pred.is_floating_point():
            raise InvalidMapError("prediction", f"prediction must hold integers, got {pred.dtype}")
        gt = gt.long()
        pred = pred.long()
        self._check_range("ground truth", int(gt.min()), int(gt.max()), n)
        if self.pred_ids == "label":
            self._check_range("prediction", int(pred.min()), int(pred.max()), n)
        else:
            self._check_range("prediction", int(pred.min()), int(pred.max()), 256)
            valid = torch.as_tensor(spec.valid_train_ids, device=device)
            if not bool(valid[pred].all()):
                bad = int(pred[~valid[pred]][0])
                raise InvalidMapError("prediction", f"prediction has train id {bad} outside 0..{spec.num_train_ids - 1} and 255")
            pred = torch.as_tensor(spec.label_id_of_train_id, device=device).long()[pred]

        pair = gt * n + pred
        self.confusion += torch.bincount(pair.flatten(), minlength=n * n).reshape(n, n).cpu().numpy()

        widths, band_of = self._widths_for(tuple(gt.shape))
        if widths:
            evaluated = torch.as_tensor(spec.evaluated, device=device)
            boundary = bands_module.boundary_mask_torch(
                gt, evaluated, torch.as_tensor(instances, device=device) if self.instance_boundaries and instances is not None else None
            )
            levels = bands_module.band_levels_torch(boundary, widths).long()
            inside = evaluated[gt] & (levels < len(widths))
            index = levels[inside] * (n * n) + pair[inside]
            per_level = torch.bincount(index, minlength=len(widths) * n * n).reshape(-1, n, n)
            self.band_confusion += torch.cumsum(per_level, dim=0).cpu().numpy()[band_of]

        if instances is not None:
            instances = torch.as_tensor(instances, device=device)
            if instances.is_floating_point():
                raise InvalidMapError("instances", f"instance map must hold integers, got {instances.dtype}")
            instances = instances.long()
            selected = instances > _INSTANCE_OFFSET
            if bool(selected.any()):
                instance_ids = instances[selected]
                if int(instance_ids.max()) > _MAX_INSTANCE_ID:
                    raise InvalidMapError("instances", f"instance map has id {int(instance_ids.max())} above {_MAX_INSTANCE_ID}")
                class_ids = instance_ids // _INSTANCE_OFFSET
                predicted = pred[selected]
                sizes = torch.bincount(instance_ids)
                hits = torch.bincount(instance_ids[predicted == class_ids], minlength=sizes.numel())
                table = torch.as_tensor(spec.same_instance_category, device=device)
                same = table[class_ids.clamp(max=n - 1), predicted]
                category_hits = torch.bincount(instance_ids[same], minlength=sizes.numel())
                present = torch.nonzero(sizes).flatten()
                self._add_instance_rows(
                    present.cpu().numpy(),
                    sizes[present].cpu().numpy(),
                    hits[present].cpu().numpy(),
                    category_hits[present].cpu().numpy(),
                )
        self.n_images += 1

    # --- scores --------------------------------------------------------------------------------------

    def compute(self) -> SemanticResult:
        """Scores from the accumulated state (the state is left unchanged)."""
        spec = self.spec
        confusion = self.confusion
        class_iou = _class_scores(confusion, spec)
        weighted = self._weighted_instance_sums()
        class_iiou = {}
        for label_id in spec.evaluated_ids:
            name = spec.names[label_id]
            if not spec.has_instances[label_id]:
                class_iiou[name] = math.nan
                continue
            tp, fn = weighted["class"].get(int(label_id), (0.0, 0.0))
            fp = _false_positives(confusion, spec, [label_id], exclude_category=None)
            class_iiou[name] = _ratio(tp, tp + fp + fn)
        category_iou = {}
        category_iiou = {}
        for category in spec.categories:
            ids = [i for i in spec.evaluated_ids if spec.category_of[i] == category]
            if ids:
                tp = int(confusion[np.ix_(ids, ids)].sum())
                fn = int(confusion[ids, :].sum()) - tp
                fp = _false_positives(confusion, spec, ids, exclude_category=category)
                category_iou[category] = _ratio(tp, tp + fp + fn)
            else:
                category_iou[category] = math.nan
            if category in spec.instance_category_ids:
                tp, fn = weighted["category"].get(category, (0.0, 0.0))
                ids = list(spec.instance_category_ids[category])
                fp = _false_positives(confusion, spec, ids, exclude_category=category)
                category_iiou[category] = _ratio(tp, tp + fp + fn)
            else:
                category_iiou[category] = math.nan
        boundary_class_iou = {
            width: _class_scores(self.band_confusion[level], spec) for level, width in enumerate(self.bands)
        }
        evaluated_pixels = int(confusion[spec.evaluated_ids].sum())
        pixel_share = {width: _ratio(int(self.band_confusion[level][spec.evaluated_ids].sum()), evaluated_pixels)
                       for level, width in enumerate(self.bands)}
        return SemanticResult(
            class_iou=class_iou,
            class_iiou=class_iiou,
            category_iou=category_iou,
            category_iiou=category_iiou,
            miou=nan_mean(class_iou.values()),
            iiou=nan_mean(class_iiou.values()),
            iou_category=nan_mean(category_iou.values()),
            iiou_category=nan_mean(category_iiou.values()),
            boundary_miou={width: nan_mean(scores.values()) for width, scores in boundary_class_iou.items()},
            boundary_class_iou=boundary_class_iou,
            n_images=self.n_images,
            confusion=confusion.copy(),
            boundary_pixel_share=pixel_share,
            boundary_width_px={width: tuple(sorted(used)) for width, used in zip(self.bands, self.widths_used)},
            defines_instance_scores=spec.defines_instance_scores,
            defines_categories=spec.defines_categories,
        )

    def _weighted_instance_sums(self) -> dict[str, dict]:
        spec = self.spec
        sums: dict[str, dict] = {"class": {}, "category": {}}
        if not self._instance_rows:
            return sums
        rows = np.concatenate(self._instance_rows)
        class_ids = rows[:, 0].astype(np.int64)
        for label_id in np.flatnonzero(np.bincount(class_ids)):
            mine = rows[class_ids == label_id]
            sums["class"][int(label_id)] = (math.fsum(mine[:, 1]), math.fsum(mine[:, 2]))
        categories = np.array([spec.category_of[i] for i in class_ids])
        for category in spec.instance_category_ids:
            mine = rows[categories == category]
            if len(mine):
                sums["category"][category] = (math.fsum(mine[:, 3]), math.fsum(mine[:, 4]))
        return sums


def _joint_histogram(gt: np.ndarray, pred: np.ndarray, levels: np.ndarray, n: int, n_levels: int) -> np.ndarray:
    """int64 counts [gt id, predicted id, band level] of two uint8 maps and a uint8 / uint16 level map.

    OpenCV's calcHist makes one pass and is about twice as fast as np.bincount on paired indices; it
    counts in float32, exact below 2**24 pixels per image, and takes images of one depth only, so larger
    images and uint16 levels (more than 254 bands) take the bincount path.
    """
    if gt.size < 2**24 and levels.dtype == np.uint8:
        counts = cv2.calcHist([gt, pred, levels], [0, 1, 2], None, [n, n, n_levels], [0, n, 0, n, 0, n_levels])
        return np.rint(counts).astype(np.int64)
    index = (levels.astype(np.int64) * n + gt) * n + pred
    counts = np.bincount(index.ravel(), minlength=n_levels * n * n)
    return np.moveaxis(counts.reshape(n_levels, n, n), 0, 2)


def _class_scores(confusion: np.ndarray, spec: LabelSpec) -> dict[str, float]:
    """IoU per evaluated class (by name, in label-id order) from one confusion matrix."""
    scores = {}
    for label_id in spec.evaluated_ids:
        tp = int(confusion[label_id, label_id])
        fn = int(confusion[label_id, :].sum()) - tp
        fp = _false_positives(confusion, spec, [label_id], exclude_category=None)
        scores[spec.names[label_id]] = _ratio(tp, tp + fp + fn)
    return scores


def _false_positives(confusion: np.ndarray, spec: LabelSpec, columns, exclude_category: str | None) -> int:
    """Column sum over gt rows of evaluated ids, leaving out the columns' own ids (or their category)."""
    if exclude_category is None:
        rows = [i for i in spec.evaluated_ids if i not in set(columns)]
    else:
        rows = [i for i in spec.evaluated_ids if spec.category_of[i] != exclude_category]
    return int(confusion[np.ix_(rows, list(columns))].sum())


def _ratio(numerator: float, denominator: float) -> float:
    return math.nan if denominator == 0 else float(numerator) / denominator


def nan_mean(values) -> float:
    """Mean over the non-NaN values (sequential sum, as cityscapesscripts' getScoreAverage); NaN if none."""
    valid = [v for v in values if not math.isnan(v)]
    if not valid:
        return math.nan
    total = 0.0
    for value in valid:
        total += value
    return total / len(valid)


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "device")


def _to_numpy(value: Any) -> np.ndarray:
    return value.numpy() if _is_torch(value) else np.asarray(value)
