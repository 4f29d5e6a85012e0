"""torchvision's Faster R-CNN and Mask R-CNN on our ResNet backbone and any registered pyramid neck.

Assembly (facts from torchvision 0.29 `models/detection/faster_rcnn.py` / `mask_rcnn.py`, the
`fasterrcnn_resnet50_fpn` / `maskrcnn_resnet50_fpn` setup, which matches detectron2's Base-RCNN-FPN.yaml
that the FaPN authors' detection configs build on):

- backbone: `PyramidBackbone` = ResNet (C2..C5) + neck (P2..P6, P6 a stride-2 subsampling of P5), exposing
  `out_channels` as torchvision requires;
- RPN anchors: one size per level, 32, 64, 128, 256, 512 on P2..P6, aspect ratios 0.5, 1, 2
  (torchvision `_default_anchorgen`; detectron2 ANCHOR_GENERATOR.SIZES / ASPECT_RATIOS);
- RoI pooling: MultiScaleRoIAlign on P2..P5 only, 7x7 for boxes and 14x14 for masks, sampling ratio 2
  (torchvision's defaults for its FPN models), levels assigned by the FPN rule (canonical box 224 -> P4);
- heads: torchvision's v1 heads, a two-FC (1024) box head and a four-conv (256) mask head.

Interface for the harness (all detection-family models, see `RCNNDetector`):

- `model.loss(images, targets) -> {name: scalar}`: images a (B, 3, H, W) float tensor in [0, 1] or a list
  of (3, H, W) tensors (sizes may differ); targets one dict per image with "boxes" (N, 4) float x0, y0, x1,
  y1 in input pixels, "labels" (N,) int64 in 1..num_classes (0 is the background) and, for Mask R-CNN,
  "masks" (N, H, W) uint8. Other keys (image_id, area, iscrowd) are ignored.
- `model.predict(images) -> list of dicts` per image, in input pixels: "boxes" (K, 4), "scores" (K,),
  "labels" (K,) int64 1..num_classes and, for Mask R-CNN, "masks" (K, H, W) float probabilities.
  `model(images)` is `model.predict(images)`.

Both always take their own path whatever `model.training` says: torchvision's transform, RPN and RoI
heads choose between training and inference by their `training` flag, so `loss` / `predict` set that
flag on those three parts for the call (they hold no BatchNorm or dropout) and restore it. The backbone
and neck keep the mode the caller set (BatchNorm statistics), as with the segmentation models.

torchvision resizes every image so that its short side is `min_size` (long side at most `max_size`),
normalises with the ImageNet mean / std and pads the batch to a multiple of 32. The defaults are COCO's
(800, 1333); tests pass small values. With `detectron2_ops` (on for detectron2's ResNet, which detectron2
checkpoints and MSRA `.pkl` backbone weights select) the network sees detectron2's input instead (BGR,
0..255 minus PIXEL_MEAN), and anchors, RoI pooling and mask pasting follow detectron2
(models.detection.detectron2_ops); callers still pass RGB in [0, 1]. Nothing is downloaded: the torchvision classes are built directly
(no `weights=` builder) and backbone weights come from a local file only.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign

from alignbench.models.backbones.resnet import ResNetBackbone
from alignbench.models.detection.detectron2_ops import Detectron2AnchorGenerator, Detectron2RoIPooler, Detectron2Transform
from alignbench.models.detectron2 import from_detectron2_detection

logger = logging.getLogger(__name__)

DETECTOR_KINDS = ("faster", "mask")
PYRAMID_LEVELS = ("p2", "p3", "p4", "p5", "p6")
ROI_LEVELS = ("p2", "p3", "p4", "p5")
ANCHOR_SIZES = ((32,), (64,), (128,), (256,), (512,))  # one size per level, P2..P6
ASPECT_RATIOS = ((0.5, 1.0, 2.0),) * len(ANCHOR_SIZES)
STRIDES = {level: 2 ** int(level[1:]) for level in PYRAMID_LEVELS}

Images = torch.Tensor | Sequence[torch.Tensor]
Targets = Sequence[Mapping[str, Any]]


class PyramidBackbone(nn.Module):
    """ResNet + neck as a torchvision detection backbone: `forward(x)` returns OrderedDict p2..p6.

    torchvision's RPN reads the levels in dict order (anchors 32..512 on p2..p6) and its RoI poolers select
    p2..p5 by name, so the neck must produce exactly those levels, finest first.
    """

    def __init__(self, body: nn.Module, neck: nn.Module, levels: Sequence[str] = PYRAMID_LEVELS) -> None:
        super().__init__()
        self.body = body
        self.neck = neck
        self.levels = tuple(levels)
        self.out_channels = int(neck.out_channels)
        strides = getattr(neck, "strides", None)
        if strides is not None and tuple(strides) != self.levels:
            raise ValueError(
                f"neck {type(neck).__name__} produces levels {tuple(strides)}; a detection neck must produce "
                f"{self.levels} (pass top_block=True for P6)"
            )

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.neck(self.body(x))
        if tuple(features) != self.levels:
            raise ValueError(f"neck {type(self.neck).__name__} returned levels {tuple(features)}, expected {self.levels}")
        return OrderedDict(features)


class RCNNDetector(nn.Module):
    """A torchvision Faster / Mask R-CNN (`self.rcnn`) behind the harness interface (module docstring).

    Args:
        rcnn: the torchvision model, whose backbone is a PyramidBackbone.
        num_classes: object categories, background excluded (labels 1..num_classes).
    """

    checkpoint_converters = {"detectron2": from_detectron2_detection}

    def __init__(self, rcnn: GeneralizedRCNN, num_classes: int) -> None:
        super().__init__()
        self.rcnn = rcnn
        self.num_classes = num_classes
        self.with_masks = isinstance(rcnn, MaskRCNN)

    @property
    def input_bgr(self) -> bool:
        """True when the network sees detectron2's input (BGR, 0..255 minus PIXEL_MEAN; Detectron2Transform)."""
        return isinstance(self.rcnn.transform, Detectron2Transform)

    @property
    def backbone(self) -> nn.Module:
        """The ResNet body (C2..C5)."""
        return self.rcnn.backbone.body

    @property
    def neck(self) -> nn.Module:
        """The pyramid neck (P2..P6)."""
        return self.rcnn.backbone.neck

    # --- the interface ----------------------------------------------------------------------------------

    def forward(self, images: Images) -> list[dict[str, torch.Tensor]]:
        return self.predict(images)

    def loss(self, images: Images, targets: Targets) -> dict[str, torch.Tensor]:
        """Training losses: RPN objectness / box regression, RoI classifier / box regression (/ mask)."""
        with self._head_mode(training=True):
            image_list, targets, features, _ = self._prepare(images, targets)
            return self._instance_losses(image_list, features, targets)

    def predict(self, images: Images) -> list[dict[str, torch.Tensor]]:
        """Detections per image in input pixels (module docstring)."""
        with self._head_mode(training=False):
            image_list, _, features, original_sizes = self._prepare(images, None)
            return self._instances(image_list, features, original_sizes)

    # --- steps shared with Panoptic FPN -----------------------------------------------------------------

    def _prepare(
        self, images: Images, targets: Targets | None
    ) -> tuple[ImageList, list[dict[str, torch.Tensor]] | None, OrderedDict[str, torch.Tensor], list[tuple[int, int]]]:
        """Check inputs, resize / normalise / batch them (torchvision's transform) and run backbone + neck.

        Called inside `_head_mode`: the transform's flag picks the training or the testing `min_size`."""
        images = _image_list(images)
        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        if targets is not None:
            targets = _checked_targets(targets, original_sizes, self.with_masks, self.num_classes)
        image_list, targets = self.rcnn.transform(images, targets)
        features = self.rcnn.backbone(image_list.tensors)
        return image_list, targets, features, original_sizes

    def _instance_losses(
        self, image_list: ImageList, features: Mapping[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        proposals, rpn_losses = self.rcnn.rpn(image_list, features, targets)
        _, roi_losses = self.rcnn.roi_heads(features, proposals, image_list.image_sizes, targets)
        return {**rpn_losses, **roi_losses}

    def _instances(
        self, image_list: ImageList, features: Mapping[str, torch.Tensor], original_sizes: list[tuple[int, int]]
    ) -> list[dict[str, torch.Tensor]]:
        proposals, _ = self.rcnn.rpn(image_list, features)
        detections, _ = self.rcnn.roi_heads(features, proposals, image_list.image_sizes)
        detections = self.rcnn.transform.postprocess(detections, image_list.image_sizes, original_sizes)
        for detection in detections:
            if "masks" in detection:  # torchvision: (K, 1, H, W) probabilities pasted into the image
                detection["masks"] = detection["masks"][:, 0]
        return detections

    @contextlib.contextmanager
    def _head_mode(self, training: bool) -> Iterator[None]:
        """Set the train / eval flag of torchvision's transform, RPN and RoI heads for one call."""
        parts = (self.rcnn.transform, self.rcnn.rpn, self.rcnn.roi_heads)
        previous = [part.training for part in parts]
        for part in parts:
            part.train(training)
        try:
            yield
        finally:
            for part, mode in zip(parts, previous):
                part.train(mode)


def _image_list(images: Images) -> list[torch.Tensor]:
    """A (B, 3, H, W) batch or a sequence of (3, H, W) images -> list of float images, checked."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"images: expected a (B, 3, H, W) tensor or a list of (3, H, W) tensors, got {tuple(images.shape)}")
        images = list(images.unbind(0))
    images = list(images)
    if not images:
        raise ValueError("images: empty batch")
    for index, image in enumerate(images):
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"images[{index}]: expected a (3, H, W) tensor, got {shape}")
        if not image.is_floating_point():
            raise ValueError(f"images[{index}]: expected floats in [0, 1], got dtype {image.dtype}")
    return images


def _checked_targets(
    targets: Targets, sizes: Sequence[tuple[int, int]], with_masks: bool, num_classes: int
) -> list[dict[str, torch.Tensor]]:
    """Copies of the targets with torchvision's dtypes; ValueError naming the image for bad ones."""
    targets = list(targets)
    if len(targets) != len(sizes):
        raise ValueError(f"targets: {len(targets)} targets for {len(sizes)} images")
    checked = []
    for index, (target, (height, width)) in enumerate(zip(targets, sizes)):
        if "boxes" not in target or "labels" not in target:
            raise ValueError(f"targets[{index}]: needs 'boxes' and 'labels'")
        boxes = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(target["labels"], dtype=torch.int64).reshape(-1)
        if len(labels) != len(boxes):
            raise ValueError(f"targets[{index}]: {len(boxes)} boxes but {len(labels)} labels")
        if len(labels) and (int(labels.min()) < 1 or int(labels.max()) > num_classes):
            raise ValueError(f"targets[{index}]: labels must be in 1..{num_classes} (0 is the background), got {labels.tolist()}")
        degenerate = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
        if bool(degenerate.any()):
            raise ValueError(f"targets[{index}]: box {boxes[degenerate][0].tolist()} has no positive width and height")
        entry = {"boxes": boxes, "labels": labels}
        if with_masks:
            if "masks" not in target:
                raise ValueError(f"targets[{index}]: Mask R-CNN needs 'masks' (N, H, W)")
            masks = torch.as_tensor(target["masks"]).to(torch.uint8)
            if masks.shape != (len(boxes), height, width):
                raise ValueError(f"targets[{index}]: masks of shape {tuple(masks.shape)}, expected {(len(boxes), height, width)}")
            entry["masks"] = masks
        checked.append(entry)
    return checked


def build_pyramid_backbone(
    depth: int,
    neck: Callable[..., nn.Module],
    neck_options: Mapping | None = None,
    neck_channels: int = 256,
    backbone_weights: str | Path | None = None,
    frozen_bn: bool | None = None,
    freeze_stem: bool = False,
    backbone_style: str | None = None,
) -> PyramidBackbone:
    """ResNet-`depth` + `neck(backbone.out_channels, neck_channels, top_block=True, **neck_options)`.

    The neck class must follow the neck interface (models.fpn.FPN) and produce p2..p6; `top_block=True` asks
    FPN / FaPN for P6 and may be overridden through `neck_options`. `backbone_style` as in
    models.backbones.resnet.ResNetBackbone ("detectron2": stride in the 1x1 conv, FrozenBatchNorm).
    """
    body = ResNetBackbone(
        depth, frozen_bn=frozen_bn, freeze_stem=freeze_stem, weights=backbone_weights, style=backbone_style
    )
    options = {"top_block": True, **dict(neck_options or {})}
    return PyramidBackbone(body, neck(body.out_channels, neck_channels, **options))


def build_rcnn(
    kind: str,
    num_classes: int,
    backbone: PyramidBackbone,
    *,
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    rcnn_options: Mapping | None = None,
    detectron2_ops: bool = False,
) -> GeneralizedRCNN:
    """torchvision FasterRCNN ("faster") or MaskRCNN ("mask") on `backbone` with 5-level anchors and
    4-level RoI poolers; `rcnn_options` are further keyword arguments of the torchvision class (e.g.
    box_score_thresh, box_detections_per_img, rpn_post_nms_top_n_test).

    `detectron2_ops=True` swaps in detectron2's input normalisation, anchors, RoIAlignV2 pooling and mask
    pasting (models.detection.detectron2_ops) so that detectron2 checkpoints compute what they computed there."""
    if kind not in DETECTOR_KINDS:
        raise ValueError(f"kind: expected one of {DETECTOR_KINDS}, got {kind!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1 (object categories, background excluded), got {num_classes}")
    if detectron2_ops:
        anchors = Detectron2AnchorGenerator(ANCHOR_SIZES, ASPECT_RATIOS, [STRIDES[level] for level in PYRAMID_LEVELS])
        pooler = partial(Detectron2RoIPooler, ROI_LEVELS, strides=STRIDES)  # POOLER_SAMPLING_RATIO 0
    else:
        anchors = AnchorGenerator(ANCHOR_SIZES, ASPECT_RATIOS)
        pooler = partial(MultiScaleRoIAlign, list(ROI_LEVELS), sampling_ratio=2)
    options: dict[str, Any] = {
        "rpn_anchor_generator": anchors,
        "box_roi_pool": pooler(output_size=7),
        **dict(rcnn_options or {}),
    }
    if kind == "mask":
        options.setdefault("mask_roi_pool", pooler(output_size=14))
    min_size = tuple(min_size) if isinstance(min_size, Sequence) else min_size
    model_class = MaskRCNN if kind == "mask" else FasterRCNN
    # num_classes + 1: torchvision's predictors count the background as class 0.
    rcnn = model_class(backbone, num_classes=num_classes + 1, min_size=min_size, max_size=max_size, **options)
    if detectron2_ops:
        rcnn.transform = Detectron2Transform(min_size, max_size)
    return rcnn


def build_detector(
    num_classes: int,
    *,
    kind: str,
    depth: int,
    neck: Callable[..., nn.Module],
    neck_options: Mapping | None = None,
    neck_channels: int = 256,
    backbone_weights: str | Path | None = None,
    frozen_bn: bool | None = None,
    freeze_stem: bool = False,
    backbone_style: str | None = None,
    detectron2_ops: bool | None = None,
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    rcnn_options: Mapping | None = None,
) -> RCNNDetector:
    """Faster ("faster") or Mask ("mask") R-CNN with ResNet-`depth` and any neck class producing P2..P6.

    `num_classes` counts object categories without the background. The backbone's BatchNorm follows
    models.backbones.resnet (frozen when `backbone_weights` are given). `neck_channels` may be lowered for quick
    experiments (a multiple of 8 for FaPN's deformable groups). `backbone_style="detectron2"` builds
    detectron2's ResNet (chosen automatically for detectron2 checkpoints); `detectron2_ops` (default: the
    same as that style) uses detectron2's input convention, anchors and RoIAlign (build_rcnn).
    """
    backbone = build_pyramid_backbone(
        depth, neck, neck_options, neck_channels, backbone_weights, frozen_bn, freeze_stem, backbone_style
    )
    if detectron2_ops is None:
        detectron2_ops = backbone.body.style == "detectron2"
    rcnn = build_rcnn(
        kind, num_classes, backbone, min_size=min_size, max_size=max_size, rcnn_options=rcnn_options,
        detectron2_ops=detectron2_ops,
    )
    return RCNNDetector(rcnn, num_classes)
