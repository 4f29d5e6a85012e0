"""FPT semantic segmentation models (Zhang et al., ECCV 2020, section 3.5 and Table 4): dilated ResNet-101
-> UFP (models/fpt/ufp.py) -> optional FPT block (models/fpt/transformer.py, with LGT) -> segmentation head.

Facts from the paper: dilated ResNet-101 backbone (output stride 8) pre-trained and then fixed ("fixing the
parameters of backbone"): its BatchNorm is frozen when weights are given, as in models.backbones.resnet,
and parameter counts treat it so; N = 2 parts for ST, 4 for GT; square_size 5 for LGT; DropBlock with
block size 3 and keep probability 0.9 on the FPT outputs; training with synchronised BN (our `norm="bn"`
in the FPT block).

Interpretation of the head ("the semantic segmentation head network, as in [5, 41]", DeepLabv3 / CFNet):
the pyramid levels are concatenated, a 3x3 conv (no bias) - BN - ReLU reduces them to `head_channels`
(256), Dropout2d(0.1), and a 1x1 conv predicts the classes at stride 8; the logits are upsampled bilinearly
to the input and trained with the plain cross-entropy. The classifier uses the zoo's init for prediction
layers (c2_msra_fill); other layers keep PyTorch's defaults (backbone: torchvision's; FPT: see its module).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from alignbench.models.backbones.resnet import ResNetBackbone
from alignbench.models.fpt.transformer import FeaturePyramidTransformer
from alignbench.models.fpt.ufp import UFP
from alignbench.models.heads.common import upsampled_cross_entropy
from alignbench.models.layers import c2_msra_fill
from alignbench.models.segmentation import SegmentationModel


class ConcatSegmentationHead(nn.Module):
    """Concatenate same-size levels, 3x3 conv-BN-ReLU, Dropout2d(0.1), 1x1 classifier (module docstring)."""

    def __init__(self, channels: int, levels: Sequence[str], num_classes: int, *, hidden_channels: int = 256) -> None:
        super().__init__()
        self.levels = tuple(levels)
        self.fuse = nn.Sequential(
            nn.Conv2d(len(self.levels) * channels, hidden_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
        )
        self.classifier = nn.Conv2d(hidden_channels, num_classes, kernel_size=1)
        c2_msra_fill(self.classifier)

    def forward(self, features) -> torch.Tensor:
        return self.classifier(self.fuse(torch.cat([features[level] for level in self.levels], dim=1)))


class UFPSegmenter(SegmentationModel):
    """backbone -> UFP -> (FPT) -> head; `transformer=None` is the UFP baseline of FPT Table 4."""

    def __init__(
        self,
        backbone: nn.Module,
        pyramid: UFP,
        transformer: FeaturePyramidTransformer | None,
        head: ConcatSegmentationHead,
        num_classes: int,
        *,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(num_classes, ignore_index=ignore_index)
        self.backbone = backbone
        self.pyramid = pyramid
        self.transformer = transformer
        self.head = head

    def features(self, x: torch.Tensor):
        """The (transformed) pyramid of a preprocessed batch."""
        levels = self.pyramid(self.backbone(x))
        return levels if self.transformer is None else self.transformer(levels)

    def predict_padded(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def losses_padded(self, x: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss_sem_seg": upsampled_cross_entropy(self.head(self.features(x)), targets, self.ignore_index)}


def build_ufp_segmenter(
    num_classes: int,
    *,
    transformers: Sequence[str] = (),
    depth: int = 101,
    square_size: int | None = 5,
    outside: str = "zeros",
    pairs: str = "all",
    st_parts: int = 2,
    gt_parts: int = 4,
    kernel_sizes: Sequence[int] = (1, 7, 15, 31),
    arrangement: str = "cascade",
    norm: str | None = "bn",
    dropblock_size: int | None = 3,
    neck_channels: int = 256,
    head_channels: int = 256,
    backbone_weights: str | Path | None = None,
    frozen_bn: bool | None = None,
) -> UFPSegmenter:
    """Dilated ResNet + UFP + FPT with `transformers` (a subset of ("st", "gt", "rt"); "gt" is LGT with
    `square_size`, the global GT with None) + concat head. Empty `transformers`: the UFP baseline."""
    backbone = ResNetBackbone(depth, frozen_bn=frozen_bn, weights=backbone_weights, output_stride=8)
    pyramid = UFP(
        backbone.out_channels, neck_channels, kernel_sizes=kernel_sizes, arrangement=arrangement,
        in_stride=backbone.strides["c5"],
    )
    transformer = None
    if transformers:
        transformer = FeaturePyramidTransformer(
            neck_channels,
            pyramid.strides,
            transformers=transformers,
            st_parts=st_parts,
            gt_parts=gt_parts,
            square_size=square_size,
            outside=outside,
            pairs=pairs,
            norm=norm,
            dropblock_size=dropblock_size,
        )
    head = ConcatSegmentationHead(neck_channels, tuple(pyramid.strides), num_classes, hidden_channels=head_channels)
    return UFPSegmenter(backbone, pyramid, transformer, head, num_classes)
