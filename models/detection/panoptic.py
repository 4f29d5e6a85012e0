"""Panoptic FPN (Kirillov et al., CVPR 2019): Mask R-CNN plus the Semantic-FPN branch on the same pyramid.

Facts from detectron2 (modeling/meta_arch/panoptic_fpn.py, config/defaults.py and
configs/COCO-PanopticSegmentation/Base-Panoptic-FPN.yaml):

- the semantic branch is SemSegFPNHead (models.heads.semantic_fpn) on P2..P5 with 128 channels and
  GroupNorm, predicting the stuff classes plus one "things" class: label 0 is every thing pixel, stuff
  categories are 1..S, 255 is ignored (SEM_SEG_HEAD.NUM_CLASSES 54 = 53 COCO stuff + 1);
- losses: the Mask R-CNN losses (INSTANCE_LOSS_WEIGHT 1.0) plus the semantic cross-entropy weighted 0.5
  (Base-Panoptic-FPN.yaml SEM_SEG_HEAD.LOSS_WEIGHT);
- inference merge (`combine_semantic_and_instance_outputs`, defaults PANOPTIC_FPN.COMBINE.OVERLAP_THRESH
  0.5, STUFF_AREA_LIMIT 4096, INSTANCES_CONFIDENCE_THRESH 0.5): instances in decreasing score order,
  stopping at the first below the score threshold; an instance is dropped when more than
  `overlap_threshold` of its mask is already taken, otherwise it takes its still-free pixels; then each
  stuff class of the semantic argmax takes its still-free pixels when they number at least
  `stuff_area_limit`; everything else is VOID (segment id 0).

Segments are numbered 1, 2, ... in the order they are added. segments_info entries carry the model's own
labels, as detectron2 does: "category_id" is the instance label 1..num_classes for things ("isthing":
True, with "score" and "instance_id", the index into the instance outputs) and the semantic label 1..S for
stuff ("isthing": False); every entry has "id" and "area". bench.evaluation.detection maps them to COCO
category ids for metrics.panoptic.PanopticAccumulator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.image_list import ImageList

from alignbench.models.detection.rcnn import (
    ROI_LEVELS,
    Images,
    RCNNDetector,
    Targets,
    build_pyramid_backbone,
    build_rcnn,
)
from alignbench.models.heads.semantic_fpn import SemanticFPNHead

logger = logging.getLogger(__name__)

THINGS_LABEL = 0  # the semantic branch's "things" class


def combine_panoptic(
    masks: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    semantic: torch.Tensor,
    *,
    overlap_threshold: float = 0.5,
    stuff_area_limit: int = 4096,
    score_threshold: float = 0.5,
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Merge instance masks and a semantic label map into a panoptic segment map (module docstring).

    Args:
        masks: (K, H, W) binary instance masks (bool, or probabilities already thresholded by the caller).
        scores: (K,) instance scores.
        labels: (K,) instance labels (1..num_classes).
        semantic: (H, W) semantic labels, 0 = things, 1..S stuff.
        overlap_threshold: drop an instance when more than this fraction of its mask is already taken.
        stuff_area_limit: a stuff class needs at least this many free pixels to become a segment.
        score_threshold: instances scoring below it are not used.

    Returns:
        (segment map (H, W) int32, 0 = VOID; segments_info list).
    """
    if masks.dim() != 3 or masks.shape[1:] != semantic.shape:
        raise ValueError(f"masks {tuple(masks.shape)} do not match the semantic map {tuple(semantic.shape)}")
    if not len(masks) == len(scores) == len(labels):
        raise ValueError(f"{len(masks)} masks, {len(scores)} scores and {len(labels)} labels")
    panoptic = torch.zeros(semantic.shape, dtype=torch.int32, device=semantic.device)
    taken = torch.zeros(semantic.shape, dtype=torch.bool, device=semantic.device)
    segments: list[dict[str, Any]] = []
    masks = masks.to(device=semantic.device, dtype=torch.bool)
    ordered_scores, order = torch.sort(scores, descending=True, stable=True)  # stable: ties keep input order
    for score, index in zip(ordered_scores.tolist(), order.tolist()):
        if score < score_threshold:
            break
        mask = masks[index]
        area = int(mask.sum())
        if area == 0:
            continue
        overlap = int((mask & taken).sum())
        if overlap / area > overlap_threshold:
            continue
        if overlap:
            mask = mask & ~taken
            area -= overlap
        segment_id = len(segments) + 1
        panoptic[mask] = segment_id
        taken |= mask
        segments.append({
            "id": segment_id, "isthing": True, "category_id": int(labels[index]), "score": float(score),
            "instance_id": int(index), "area": area,
        })
    for label in torch.unique(semantic).tolist():  # ascending label order
        if label == THINGS_LABEL:
            continue
        mask = (semantic == label) & ~taken
        area = int(mask.sum())
        if area < stuff_area_limit or area == 0:
            continue
        segment_id = len(segments) + 1
        panoptic[mask] = segment_id
        taken |= mask
        segments.append({"id": segment_id, "isthing": False, "category_id": int(label), "area": area})
    return panoptic, segments


class PanopticFPN(RCNNDetector):
    """Mask R-CNN + Semantic-FPN branch; `loss` / `predict` as RCNNDetector with the panoptic additions.

    Training targets also carry "semantic": (H, W) int64 labels at the input size, 0 = things, 1..S stuff,
    `ignore_index` (255) ignored (bench.data.coco.CocoPanopticDataset.semantic_labels gives that mapping).
    `predict` adds per image "semantic" (H, W) int64 (argmax of the branch), "panoptic" (H, W) int32 segment
    ids and "segments_info" (module docstring).
    """

    def __init__(
        self,
        rcnn: MaskRCNN,
        num_classes: int,
        semantic_head: SemanticFPNHead,
        num_stuff_classes: int,
        *,
        overlap_threshold: float = 0.5,
        stuff_area_limit: int = 4096,
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(rcnn, num_classes)
        if not self.with_masks:
            raise ValueError("Panoptic FPN needs a Mask R-CNN")
        self.semantic_head = semantic_head
        self.num_stuff_classes = num_stuff_classes
        self.overlap_threshold = overlap_threshold
        self.stuff_area_limit = stuff_area_limit
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold
        self.ignore_index = ignore_index

    def loss(self, images: Images, targets: Targets) -> dict[str, torch.Tensor]:
        """Mask R-CNN losses plus "loss_sem_seg" (weighted 0.5 by default)."""
        targets = list(targets)
        semantic = [self._semantic_target(target, index) for index, target in enumerate(targets)]
        with self._head_mode(training=True):
            image_list, instance_targets, features, sizes = self._prepare(images, targets)
            for index, (label_map, size) in enumerate(zip(semantic, sizes)):
                if tuple(label_map.shape) != size:
                    raise ValueError(f"targets[{index}]: 'semantic' of shape {tuple(label_map.shape)}, expected {size}")
            losses = self.semantic_head.losses(features, self._batched_semantic(semantic, image_list))
            losses.update(self._instance_losses(image_list, features, instance_targets))
        return losses

    def predict(self, images: Images) -> list[dict[str, Any]]:
        with self._head_mode(training=False):
            image_list, _, features, original_sizes = self._prepare(images, None)
            outputs: list[dict[str, Any]] = self._instances(image_list, features, original_sizes)
            logits = self.semantic_head(features)
        logits = F.interpolate(logits, size=image_list.tensors.shape[-2:], mode="bilinear", align_corners=False)
        for index, output in enumerate(outputs):
            # detectron2 sem_seg_postprocess: crop the padded batch to the resized image, resize to the input.
            height, width = image_list.image_sizes[index]
            image_logits = logits[index : index + 1, :, :height, :width]
            image_logits = F.interpolate(image_logits, size=original_sizes[index], mode="bilinear", align_corners=False)
            output["semantic"] = image_logits[0].argmax(dim=0)
            output["panoptic"], output["segments_info"] = combine_panoptic(
                output["masks"] > self.mask_threshold,
                output["scores"],
                output["labels"],
                output["semantic"],
                overlap_threshold=self.overlap_threshold,
                stuff_area_limit=self.stuff_area_limit,
                score_threshold=self.score_threshold,
            )
        return outputs

    def _semantic_target(self, target: Mapping[str, Any], index: int) -> torch.Tensor:
        if "semantic" not in target:
            raise ValueError(f"targets[{index}]: Panoptic FPN needs 'semantic' (H, W) labels")
        semantic = torch.as_tensor(target["semantic"]).to(torch.int64)
        valid = semantic != self.ignore_index
        if semantic.dim() != 2:
            raise ValueError(f"targets[{index}]: 'semantic' must be (H, W), got {tuple(semantic.shape)}")
        if bool(valid.any()) and (int(semantic[valid].min()) < 0 or int(semantic[valid].max()) > self.num_stuff_classes):
            raise ValueError(
                f"targets[{index}]: semantic labels must be in 0..{self.num_stuff_classes} or {self.ignore_index}"
            )
        return semantic

    def _batched_semantic(self, semantic: Sequence[torch.Tensor], image_list: ImageList) -> torch.Tensor:
        """Semantic targets resized (nearest) like their images and padded with `ignore_index` like the batch."""
        batch = torch.full(
            (len(semantic), *image_list.tensors.shape[-2:]), self.ignore_index, dtype=torch.int64,
            device=image_list.tensors.device,
        )
        for index, (label_map, (height, width)) in enumerate(zip(semantic, image_list.image_sizes)):
            resized = F.interpolate(label_map[None, None].float(), size=(height, width), mode="nearest")
            batch[index, :height, :width] = resized[0, 0].to(device=batch.device, dtype=torch.int64)
        return batch


def build_panoptic_fpn(
    num_classes: int,
    *,
    depth: int,
    neck: Callable[..., nn.Module],
    neck_options: Mapping | None = None,
    neck_channels: int = 256,
    num_stuff_classes: int = 53,
    semantic_channels: int = 128,
    semantic_loss_weight: float = 0.5,
    overlap_threshold: float = 0.5,
    stuff_area_limit: int = 4096,
    score_threshold: float = 0.5,
    backbone_weights: str | Path | None = None,
    frozen_bn: bool | None = None,
    freeze_stem: bool = False,
    backbone_style: str | None = None,
    detectron2_ops: bool | None = None,
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    rcnn_options: Mapping | None = None,
) -> PanopticFPN:
    """Panoptic FPN with ResNet-`depth` and any neck class producing P2..P6.

    `num_classes` counts thing categories (the Mask R-CNN's, background excluded); the semantic branch
    predicts `num_stuff_classes` + 1 classes (53 + 1 for COCO; 11 + 1 for the Cityscapes-layout data).
    `semantic_channels` must be a multiple of 32 (GroupNorm(32)). `backbone_style` / `detectron2_ops` as in
    models.detection.rcnn.build_detector.
    """
    backbone = build_pyramid_backbone(
        depth, neck, neck_options, neck_channels, backbone_weights, frozen_bn, freeze_stem, backbone_style
    )
    if detectron2_ops is None:
        detectron2_ops = backbone.body.style == "detectron2"
    rcnn = build_rcnn(
        "mask", num_classes, backbone, min_size=min_size, max_size=max_size, rcnn_options=rcnn_options,
        detectron2_ops=detectron2_ops,
    )
    strides = {level: 2 ** int(level[1:]) for level in ROI_LEVELS}
    head = SemanticFPNHead(
        backbone.out_channels, strides, num_stuff_classes + 1, channels=semantic_channels,
        in_features=ROI_LEVELS, loss_weight=semantic_loss_weight,
    )
    return PanopticFPN(
        rcnn, num_classes, head, num_stuff_classes,
        overlap_threshold=overlap_threshold, stuff_area_limit=stuff_area_limit, score_threshold=score_threshold,
    )
