"""Full semantic segmentation models: one base class for the harness, and backbone + neck + head models.

Interface (every segmentation model in the zoo):
- input: float RGB images in [0, 1], shape (B, 3, H, W), any H and W; the model normalises them with
  the ImageNet mean / std (torchvision's backbones' convention) and zero-pads them at the bottom / right
  to a multiple of `size_divisibility` (32, what detectron2's ImageList does with size_divisibility 32;
  1, no padding, for models that need none, such as SFNet);
- `model(images)` returns logits (B, num_classes, H, W) at the input resolution, always by the
  inference path (PointRend subdivision included), whatever the train / eval mode;
- `model.loss(images, targets)` returns a dict of scalar losses by the training path; targets are
  (B, H, W) int64 train ids with `ignore_index` (255) for ignored pixels; padding is ignored.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from alignbench.models.backbones.resnet import ResNetBackbone
from alignbench.models.detectron2 import PIXEL_MEAN_BGR, PIXEL_STD, from_detectron2_semantic
from alignbench.models.heads.pointrend import PointRendSemanticHead
from alignbench.models.heads.semantic_fpn import SemanticFPNHead

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SEMANTIC_HEADS = ("pointrend", "semantic_fpn")


class SegmentationModel(nn.Module):
    """Base class: normalisation, padding, cropping and input checks around two hooks.

    Subclasses implement `predict_padded(x) -> logits` (any resolution covering the padded image; they
    are resized bilinearly to the padded size and cropped) and `losses_padded(x, targets) -> dict`.
    """

    size_divisibility = 32

    def __init__(self, num_classes: int, *, ignore_index: int = 255) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.input_scale = 1.0  # images are multiplied by it before the mean is subtracted
        self.input_bgr = False  # reverse the channels (RGB -> BGR) first

    def use_detectron2_input(self) -> None:
        """Normalise as detectron2's MSRA models expect: BGR in 0..255 minus PIXEL_MEAN, PIXEL_STD 1
        (models.detectron2). Callers still pass RGB images in [0, 1]."""
        self.pixel_mean = torch.tensor(PIXEL_MEAN_BGR, device=self.pixel_mean.device).view(1, 3, 1, 1)
        self.pixel_std = torch.tensor(PIXEL_STD, device=self.pixel_std.device).view(1, 3, 1, 1)
        self.input_scale, self.input_bgr = 255.0, True

    def predict_padded(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def losses_padded(self, x: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _check_images(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images: expected a (B, 3, H, W) tensor, got {shape}")
        if not images.is_floating_point():
            raise ValueError(f"images: expected floats in [0, 1], got dtype {images.dtype}")

    def _padding(self, height: int, width: int) -> tuple[int, int]:
        d = self.size_divisibility
        return (-height) % d, (-width) % d

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise (ImageNet statistics, or detectron2's convention after `use_detectron2_input`) and
        zero-pad to a multiple of `size_divisibility`."""
        self._check_images(images)
        x = images.flip(1) if self.input_bgr else images
        if self.input_scale != 1.0:
            x = x * self.input_scale
        x = (x - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)
        pad_h, pad_w = self._padding(*images.shape[-2:])
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        x = self.preprocess(images)
        logits = self.predict_padded(x)
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :height, :width]

    def loss(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.preprocess(images)
        if targets.dim() != 3 or targets.shape[0] != images.shape[0] or targets.shape[-2:] != images.shape[-2:]:
            raise ValueError(
                f"targets: expected shape {(images.shape[0], *images.shape[-2:])}, got {tuple(targets.shape)}"
            )
        pad_h, pad_w = self._padding(*images.shape[-2:])
        targets = targets.long()
        if pad_h or pad_w:
            targets = F.pad(targets, (0, pad_w, 0, pad_h), value=self.ignore_index)
        return self.losses_padded(x, targets)


class PyramidSegmenter(SegmentationModel):
    """backbone (-> c2..c5) + neck (-> p-levels) + head (-> logits / losses).

    Loads detectron2 SemanticSegmentor checkpoints (FaPN's PointRend releases, models.detectron2) besides ours.
    """

    checkpoint_converters = {"detectron2": from_detectron2_semantic}

    def __init__(
        self, backbone: nn.Module, neck: nn.Module, head: nn.Module, num_classes: int, *, ignore_index: int = 255
    ) -> None:
        super().__init__(num_classes, ignore_index=ignore_index)
        self.backbone = backbone
        self.neck = neck
        self.head = head

    def pyramid(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Neck features of an already preprocessed (normalised, padded) batch."""
        return self.neck(self.backbone(x))

    def predict_padded(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pyramid(x))

    def losses_padded(self, x: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head.losses(self.pyramid(x), targets)


def build_pyramid_segmenter(
    num_classes: int,
    *,
    depth: int,
    neck: Callable[..., nn.Module],
    neck_options: Mapping | None = None,
    neck_channels: int = 256,
    head: str = "pointrend",
    head_channels: int = 128,
    backbone_weights: str | Path | None = None,
    backbone_style: str | None = None,
    frozen_bn: bool | None = None,
    freeze_stem: bool = False,
    train_num_points: int = 2048,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    subdivision_steps: int = 2,
    subdivision_num_points: int = 8192,
    coarse_pred_each_layer: bool = False,
    point_fc_dim: int = 256,
    point_num_fc: int = 3,
    class_weights: Sequence[float] | None = None,
) -> PyramidSegmenter:
    """ResNet + `neck` + PointRend (default) or Semantic-FPN head, the FaPN Table 1 / 4 setting.

    Defaults are the Cityscapes PointRend semantic config facts (models.heads.pointrend); the backbone's
    BatchNorm is frozen when `backbone_weights` are given (see models.backbones.resnet);
    `backbone_style="detectron2"` builds detectron2's MSRA ResNet and its input convention (FaPN's released
    checkpoints; chosen automatically for detectron2 files and `.pkl` backbone weights); `neck_channels` and
    `head_channels` may be lowered for quick experiments (neck_channels a multiple of the 8 deformable
    groups, head_channels a multiple of 32 for GroupNorm(32)). `class_weights` (Semantic-FPN head only) weight the
    training loss per class (e.g. by class frequency, as SegNet trains on CamVid).
    """
    if head not in SEMANTIC_HEADS:
        raise ValueError(f"head: expected one of {SEMANTIC_HEADS}, got {head!r}")
    if class_weights is not None and head != "semantic_fpn":
        raise ValueError("class_weights: only the Semantic-FPN head weights its loss by class")
    backbone = ResNetBackbone(
        depth, frozen_bn=frozen_bn, freeze_stem=freeze_stem, weights=backbone_weights, style=backbone_style
    )
    pyramid = neck(backbone.out_channels, neck_channels, **dict(neck_options or {}))
    if head == "pointrend":
        head_module: nn.Module = PointRendSemanticHead(
            pyramid.out_channels,
            pyramid.strides,
            num_classes,
            channels=head_channels,
            fc_dim=point_fc_dim,
            num_fc=point_num_fc,
            coarse_pred_each_layer=coarse_pred_each_layer,
            train_num_points=train_num_points,
            oversample_ratio=oversample_ratio,
            importance_sample_ratio=importance_sample_ratio,
            subdivision_steps=subdivision_steps,
            subdivision_num_points=subdivision_num_points,
        )
    else:
        head_module = SemanticFPNHead(pyramid.out_channels, pyramid.strides, num_classes, channels=head_channels,
                                      class_weights=class_weights)
    model = PyramidSegmenter(backbone, pyramid, head_module, num_classes)
    if backbone.style == "detectron2":
        model.use_detectron2_input()
    return model
