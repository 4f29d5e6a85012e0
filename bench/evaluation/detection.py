"""Detection-family model outputs into the metrics, and dataset samples into model inputs.

The models (models.detection) speak in contiguous labels: object labels 1..K (CategoryTable order, 0 the
background) and, for Panoptic FPN's semantic branch, 0 = things and stuff labels 1..S. The datasets and
metrics speak COCO category ids. This module converts between the two, in memory (no PNG round trip):

- `coco_detections(outputs, image_ids, categories)`: `model.predict` outputs -> a COCO results list for
  metrics.coco.evaluate_coco (bbox, plus RLE masks for segm);
- `panoptic_prediction(output, things, stuff)`: one Panoptic FPN output -> (segment map, segments_info)
  with COCO category ids, the prediction side of metrics.panoptic.PanopticAccumulator.update;
- `panoptic_training_pair(sample, things, semantic_labels)`: a PanopticSample -> (image, target) for
  `model.loss`;
- `evaluate_detector` / `evaluate_panoptic_model`: a model's scores over a dataset, through the one
  inference loop of bench.evaluation.loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from alignbench.bench import distributed
from alignbench.bench.data.coco import CategoryTable, CocoDetectionDataset, CocoPanopticDataset, PanopticSample
from alignbench.bench.data.images import image_to_tensor
from alignbench.metrics.coco import CocoResult, detections_to_coco
from alignbench.metrics.panoptic import PanopticResult

log = logging.getLogger(__name__)


def coco_detections(
    outputs: Sequence[Mapping[str, Any]],
    image_ids: Sequence[Any],
    categories: CategoryTable,
    with_masks: bool | None = None,
    mask_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """COCO results entries for `model.predict` outputs (one per image, in `image_ids` order).

    `with_masks` None: include RLE masks when the outputs have "masks". Masks are thresholded at
    `mask_threshold` (0.5, as torchvision's and detectron2's mask post-processing do).
    """
    if len(outputs) != len(image_ids):
        raise ValueError(f"{len(outputs)} outputs for {len(image_ids)} image ids")
    results: list[dict[str, Any]] = []
    for output, image_id in zip(outputs, image_ids):
        use_masks = ("masks" in output) if with_masks is None else with_masks
        if use_masks and "masks" not in output:
            raise ValueError("masks requested (segm) but the model's outputs have none (not a Mask R-CNN?)")
        labels = output["labels"].detach().cpu().numpy()
        results += detections_to_coco(
            image_id,
            output["boxes"],
            output["scores"],
            categories.category_ids_of(labels),
            masks=output["masks"] if use_masks else None,
            mask_threshold=mask_threshold,
        )
    return results


def panoptic_prediction(
    output: Mapping[str, Any], things: CategoryTable, stuff: CategoryTable
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A Panoptic FPN output -> (int32 HxW segment map, segments_info with COCO category ids).

    Thing segments carry instance labels 1..K (`things` order), stuff segments semantic labels 1..S
    (`stuff` order, CocoPanopticDataset.semantic_labels' convention). Keys kept: id, category_id, isthing,
    area (and score for things).
    """
    segment_map = output["panoptic"].detach().cpu().numpy().astype(np.int32)
    segments = []
    for segment in output["segments_info"]:
        table = things if segment["isthing"] else stuff
        entry = {
            "id": int(segment["id"]),
            "category_id": int(table.category_ids_of([segment["category_id"]])[0]),
            "isthing": int(bool(segment["isthing"])),
            "area": int(segment["area"]),
        }
        if "score" in segment:
            entry["score"] = float(segment["score"])
        segments.append(entry)
    return segment_map, segments


def panoptic_training_pair(
    sample: PanopticSample, things: CategoryTable, semantic_labels: Mapping[int, int], ignore_label: int = 255
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(image float CxHxW in [0, 1], target) for PanopticFPN.loss from a sample with its image.

    target: boxes / labels / masks of the non-crowd thing segments (crowd regions are left out of the
    instance branch, as the detection datasets do, and count as things in the semantic map) and "semantic"
    from `semantic_labels` (e.g. CocoPanopticDataset.semantic_labels(): things 0, stuff 1..S).
    """
    if sample.image is None:
        raise ValueError(f"image id {sample.image_id!r}: the panoptic dataset was opened without an image folder")
    boxes, category_ids, masks, _ = sample.thing_instances(include_crowd=False)
    image = image_to_tensor(sample.image)
    target = {
        "boxes": torch.from_numpy(boxes).reshape(-1, 4),
        "labels": torch.from_numpy(things.labels_of(category_ids)),
        "masks": torch.from_numpy(masks),
        "semantic": torch.from_numpy(sample.semantic_map(semantic_labels, ignore_label).astype(np.int64)),
    }
    return image, target


def evaluate_detector(
    model: nn.Module,
    dataset: CocoDetectionDataset,
    iou_types: Sequence[str] = ("bbox",),
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, CocoResult]:
    """COCO AP of a detector (`model.predict`) over a CocoDetectionDataset, per iou type ("bbox", "segm").

    The model is put in eval mode. Ground truth is the dataset's JSON (crowd regions included: COCOeval
    handles them). Under torch.distributed the images are sharded over the ranks (the one inference loop,
    bench.evaluation.loop), COCOeval runs on rank 0 over the detections in dataset order and the scores are
    broadcast to every rank: they equal one process's bit for bit.
    """
    # here: bench.evaluation.loop imports this module (its evaluators convert outputs with it): an import cycle
    from alignbench.bench.evaluation.loop import CocoEvaluator, detector_predictor, run_inference

    (evaluator,) = run_inference(model, dataset, detector_predictor, [CocoEvaluator(dataset.data, dataset.categories, iou_types)],
                                 str(device), progress, "detection eval")
    return compute_on_main(evaluator)


def evaluate_panoptic_model(
    model: nn.Module,
    dataset: CocoPanopticDataset,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> PanopticResult:
    """PQ / SQ / RQ of a Panoptic FPN model over a CocoPanopticDataset opened with its image folder.

    Under torch.distributed each rank predicts its shard (image i on rank i % world) and every rank
    returns the scores of the exact merge of all shards.
    """
    from alignbench.bench.evaluation.loop import PanopticEvaluator, detector_predictor, run_inference  # here: the cycle above

    (evaluator,) = run_inference(model, dataset, detector_predictor, [PanopticEvaluator(dataset)], str(device), progress, "panoptic eval")
    return evaluator.compute()


def compute_on_main(evaluator):
    """`evaluator.compute()` on rank 0 only, its result broadcast to every rank (alone: just compute)."""
    result = evaluator.compute() if distributed.is_main() else None
    if distributed.is_main() and isinstance(result, dict):
        log.info("%d detections", sum(len(entries) for entries in getattr(evaluator, "per_image", {}).values()))
    return distributed.broadcast_from_main(result)
