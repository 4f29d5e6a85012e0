"""The one inference loop: a model over a dataset, its outputs fed to evaluators that share one protocol.

An evaluator follows torchmetrics' shape: `reset()`, `update(sample, output, index)` per image, `merge(other)`
to fold in another process's state exactly, `compute()` for the result. The evaluators here adapt the metric
accumulators of `alignbench.metrics` (which keep their own update signatures) to model outputs:

- `SemanticEvaluator`: train-id predictions into metrics.semantic.SemanticAccumulator (the dataset's label
  table: Cityscapes' scores on its classes, and boundary bands);
- `CocoEvaluator`: detections into COCO results, scored by metrics.coco.evaluate_coco (box / mask AP);
- `PanopticEvaluator`: Panoptic FPN outputs into metrics.panoptic.PanopticAccumulator (PQ / SQ / RQ).

`run_inference` runs the model once per image and feeds every evaluator, so a panoptic model's PQ and box AP
come from one pass over the split. Under torch.distributed each rank predicts its shard (image i on rank
i % world) and the evaluators are merged in rank order, so the scores equal one process's bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from alignbench.bench import distributed
from alignbench.bench.data.catalog import SemanticFrame, SemanticSplit
from alignbench.bench.data.images import image_to_tensor
from alignbench.bench.evaluation.detection import coco_detections, panoptic_prediction
from alignbench.metrics.boundary import DEFAULT_BANDS
from alignbench.metrics.coco import evaluate_coco
from alignbench.metrics.labels import CITYSCAPES, LabelSpec
from alignbench.metrics.panoptic import PanopticAccumulator
from alignbench.metrics.semantic import SemanticAccumulator
from alignbench.metrics.statistics import matches_to_arrays, semantic_class_counts

# The key under which a task's `evaluate` returns the per-image statistics (arrays, not metrics): what the
# report needs to recompute a score on a bootstrap resample of the images (alignbench.metrics.statistics).
STATISTICS_KEY = "per_image_statistics"


class Evaluator(Protocol):
    """What `run_inference` feeds: reset / update / merge / compute."""
    def reset(self) -> None: ...
    def update(self, sample: Any, output: Any, index: int) -> None: ...
    def merge(self, other: Evaluator) -> None: ...
    def compute(self) -> Any: ...


class SemanticEvaluator:
    """Semantic scores and boundary-band mIoU of train-id predictions (HxW tensors) against a SemanticSample's
    label ids (and instance ids, where the dataset has them), over the dataset's label table `labels`; the band
    widths are stated at `band_reference_size` (the dataset's native size) and scaled to each map's size.

    Per image it also keeps each evaluated class's (TP, FP, FN) on the full image and in each boundary band
    (`statistics()`), taken from the accumulator's confusion matrices before and after the image, so that
    they add up exactly to the dataset-level state (metrics.statistics.semantic_class_counts)."""

    def __init__(self, labels: LabelSpec = CITYSCAPES, bands: Sequence[int] = DEFAULT_BANDS,
                 band_reference_size: tuple[int, int] | None = None) -> None:
        self.labels, self.bands, self.band_reference_size = labels, tuple(bands), band_reference_size
        self.reset()

    def reset(self) -> None:
        self.accumulator = SemanticAccumulator(self.labels, bands=self.bands, pred_ids="train",
                                               band_reference_size=self.band_reference_size)
        self.per_image: dict[int, np.ndarray] = {}  # index -> (1 + bands, classes, 3) int64

    def update(self, sample, output: torch.Tensor, index: int) -> None:
        device = output.device
        before = self.accumulator.confusion.copy(), self.accumulator.band_confusion.copy()
        instances = None if sample.instance_ids is None else torch.from_numpy(sample.instance_ids).to(device)
        self.accumulator.update(output, torch.from_numpy(sample.label_ids).to(device), instances)
        confusion = np.concatenate([(self.accumulator.confusion - before[0])[None], self.accumulator.band_confusion - before[1]])
        self.per_image[index] = semantic_class_counts(confusion, self.accumulator.spec.evaluated)

    def merge(self, other: SemanticEvaluator) -> None:
        self.accumulator.merge(other.accumulator)
        self.per_image.update(other.per_image)

    def compute(self):
        return self.accumulator.compute()

    def statistics(self) -> dict[str, np.ndarray]:
        """`counts` (images, 1 + bands, classes, 3): per image (dataset order), the full image then each band,
        per evaluated class (label-id order) its (TP, FP, FN); `bands` the band widths in pixels; `confusion`
        the evaluated classes' (classes, classes) confusion matrix over all images (ground truth rows) and
        `classes` their names, for the confusion figure."""
        indices = sorted(self.per_image)
        spec = self.accumulator.spec
        ids = spec.evaluated_ids
        return {"kind": np.array("semantic"), "index": np.asarray(indices, np.int64),
                "counts": np.stack([self.per_image[i] for i in indices]), "bands": np.asarray(self.bands, np.int64),
                "confusion": self.accumulator.confusion[np.ix_(ids, ids)], "classes": np.asarray([spec.names[i] for i in ids])}


class CocoEvaluator:
    """COCO AP (one result per iou type) of detector outputs; `ground_truth` is the COCO instances JSON of
    the evaluated images and `categories` maps the model's labels 1..K to its category ids.

    The state is each image's COCO results by dataset index; `compute` evaluates them in dataset order, the
    list one process makes (COCOeval's tie-breaking follows list order).
    """

    def __init__(self, ground_truth: Mapping[str, Any], categories, iou_types: Sequence[str] = ("bbox",)) -> None:
        self.ground_truth, self.categories, self.iou_types = ground_truth, categories, tuple(iou_types)
        self.reset()

    def reset(self) -> None:
        self.per_image: dict[int, list[dict[str, Any]]] = {}

    def update(self, sample, output: Mapping[str, Any], index: int) -> None:
        self.per_image[index] = coco_detections([output], [sample.image_id], self.categories, with_masks="segm" in self.iou_types)

    def merge(self, other: CocoEvaluator) -> None:
        self.per_image.update(other.per_image)

    def __getstate__(self) -> dict:
        return {"per_image": self.per_image}  # what travels between processes: not the ground truth

    def compute(self) -> dict:
        """COCO results by iou type, each with COCOeval's per-image matches (`matches`, for `statistics`)."""
        results = [entry for index in sorted(self.per_image) for entry in self.per_image[index]]
        self.results = {iou_type: evaluate_coco(self.ground_truth, results, iou_type, keep_matches=True) for iou_type in self.iou_types}
        return self.results

    def statistics(self) -> dict[str, np.ndarray]:
        """After `compute`: COCOeval's per-image matches of each iou type (metrics.statistics.matches_to_arrays,
        prefixed "bbox_" / "segm_"), from which AP is recomputed on any resample of the images."""
        arrays: dict[str, np.ndarray] = {"index": np.asarray(sorted(self.per_image), np.int64)}
        for iou_type, result in getattr(self, "results", {}).items():  # computed on rank 0 only
            arrays.update(matches_to_arrays(result.matches, f"{iou_type}_"))
        return arrays


class PanopticEvaluator:
    """PQ / SQ / RQ of Panoptic FPN outputs against a PanopticSample (COCO category ids via `dataset`'s
    things / stuff tables)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.reset()

    def reset(self) -> None:
        self.accumulator = PanopticAccumulator(self.dataset.categories)
        self.per_image: dict[int, np.ndarray] = {}  # index -> (categories, 4): IoU sum, TP, FP, FN

    def update(self, sample, output: Mapping[str, Any], index: int) -> None:
        pred_map, pred_segments = panoptic_prediction(output, self.dataset.things, self.dataset.stuff)
        state = self.accumulator
        before = state.tp.copy(), state.fp.copy(), state.fn.copy(), len(state._matched_iou)
        state.update(pred_map, pred_segments, sample.segment_map, sample.segments_info)
        # the image's matches are what the update appended (read, not changed)
        categories = np.concatenate([np.asarray(c, np.int64) for c in state._matched_category[before[3]:]] or [np.zeros(0, np.int64)])
        ious = np.concatenate([np.asarray(v, np.float64) for v in state._matched_iou[before[3]:]] or [np.zeros(0)])
        iou_sum = np.bincount(categories, weights=ious, minlength=len(state.categories))
        self.per_image[index] = np.stack([iou_sum, state.tp - before[0], state.fp - before[1], state.fn - before[2]], axis=-1)

    def merge(self, other: PanopticEvaluator) -> None:
        self.accumulator.merge(other.accumulator)
        self.per_image.update(other.per_image)

    def __getstate__(self) -> dict:
        # what travels between processes: not the dataset
        return {"accumulator": self.accumulator, "per_image": self.per_image}

    def compute(self):
        return self.accumulator.compute()

    def statistics(self) -> dict[str, np.ndarray]:
        """`counts` (images, categories, 4): per image (dataset order) and category its (IoU sum, TP, FP, FN),
        which add up over images to PQ's state; `isthing` (categories,) bool."""
        indices = sorted(self.per_image)
        return {"kind": np.array("panoptic"), "index": np.asarray(indices, np.int64),
                "counts": np.stack([self.per_image[i] for i in indices]),
                "isthing": np.asarray([c.isthing for c in self.accumulator.categories], bool)}


# --- predictors: one dataset sample -> the model's output for it -------------------------------------------


def semantic_predictor(input_size: tuple[int, int] | None = None, max_side: int | None = None) -> Callable:
    """Predict a SemanticSample at `input_size` (default: its own size), downscaled further so that its
    longer side is at most `max_side`; the logits are upsampled to the ground-truth size and the argmax
    (train ids, uint8) returned on the model's device."""
    def predict(model: torch.nn.Module, sample, device: str) -> torch.Tensor:
        image = image_to_tensor(sample.image)[None].to(device)
        height, width = sample.label_ids.shape
        size = tuple(input_size) if input_size else (height, width)
        if max_side and max(size) > max_side:
            scale = max_side / max(size)
            size = (max(32, round(size[0] * scale)), max(32, round(size[1] * scale)))
        if size != (height, width):
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=size[0] < height)
        logits = model(image)
        if logits.shape[-2:] != (height, width):
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        return logits.argmax(dim=1)[0].to(torch.uint8)

    return predict


def detector_predictor(model: torch.nn.Module, sample, device: str) -> Mapping[str, Any]:
    """`model.predict` of one detection or panoptic sample's image (float CxHxW in [0, 1])."""
    if sample.image is None:
        raise ValueError("the dataset was opened without its image folder")
    return model.predict([image_to_tensor(sample.image).to(device)])[0]


@torch.inference_mode()
def run_inference(
    model: torch.nn.Module,
    dataset,
    predict: Callable,
    evaluators: Sequence[Evaluator],
    device: str = "cpu",
    progress: bool = False,
    description: str = "evaluating",
) -> list[Evaluator]:
    """Predict every image of this rank's shard once and feed each evaluator; return the evaluators merged
    over all ranks (on every rank), ready for `compute`. Only the evaluators' state travels between ranks
    (their `__getstate__`); each rank folds the merged state into its own evaluators."""
    model.eval().to(device)
    for evaluator in evaluators:
        evaluator.reset()
    for index in tqdm(distributed.shard_indices(len(dataset)), desc=description, unit="img", disable=not progress, leave=False):
        sample = dataset[index]
        output = predict(model, sample, device)
        for evaluator in evaluators:
            evaluator.update(sample, output, index)
    if distributed.is_distributed():
        for evaluator in evaluators:
            merged = distributed.merge_accumulators(evaluator)
            evaluator.reset()
            evaluator.merge(merged)
    return list(evaluators)


def evaluate_semantic_model(
    model: torch.nn.Module,
    dataset,
    frames: Sequence[SemanticFrame],
    device: str = "cpu",
    input_size: tuple[int, int] | None = None,
    max_side: int | None = None,
    bands: Sequence[int] = DEFAULT_BANDS,
    progress: bool = False,
) -> SemanticAccumulator:
    """The semantic accumulator of `model` over `frames` of `dataset` (a bench.data.catalog.SemanticDataset: its
    label table and native size; see `semantic_predictor` for the input size), merged over all ranks under
    torch.distributed."""
    evaluator = SemanticEvaluator(dataset.labels, bands, dataset.native_size)
    run_inference(model, SemanticSplit(dataset, frames), semantic_predictor(input_size, max_side), [evaluator], device, progress)
    return evaluator.accumulator
