"""Real-time FaPN (FaPN supplementary section 2 = main-paper appendix B; Table I; main-paper Table 8).

Built from the text (the public code does not contain it):
- inputs C3, C4, C5 of a ResNet-18/34; every level is 128 channels wide;
- P5 = FSM(C5) (FSM output 128 channels);
- for i = 5, 4: P_i is upsampled 2x with nearest-neighbour interpolation to P_i^up; an FAM aligns P_i^up
  to C^_{i-1} = FSM(C_{i-1}) (the FSM does the channel reduction); the aligned map and C^_{i-1} are
  concatenated (256 channels) and a 1x1 conv brings them back to 128 channels, giving P_{i-1};
- the prediction layer sits on P3 (stride 8); it belongs to the head (models.heads.ConvPredictionHead).

Table I ablates the components on ResNet-18; the options below give its rows:
    "FPN"                   lateral="conv", align=False, fuse="sum"
    "+ FAM"                 lateral="conv", align=True,  fuse="sum"
    "+ FAM + FSM"           lateral="fsm",  align=True,  fuse="sum"
    "+ FAM + FSM + Concat"  lateral="fsm",  align=True,  fuse="concat"   (the real-time FaPN)
Rows without FSM use FPN's 1x1 lateral conv (with bias) wherever FSM would be, P5 included; rows without
FAM merge the plain upsampled map. The FAM is FaPN's (models.fapn.neck.FeatureAlignment) with nearest
upsampling. The concatenation's 1x1 conv has a bias and no norm or activation: the text names only
"a Conv 1x1 layer". There are no per-level 3x3 output convs: the text goes from the merged P3 straight to
the prediction layer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from alignbench.models.backbones.resnet import ResNetBackbone
from alignbench.models.fapn.neck import FeatureAlignment, FeatureSelection
from alignbench.models.heads.prediction import ConvPredictionHead
from alignbench.models.layers import c2_xavier_fill, resize_to
from alignbench.models.segmentation import PyramidSegmenter


class RealTimeFaPN(nn.Module):
    """The real-time FaPN neck: outputs {"p3", "p4", "p5"}, all `out_channels` wide.

    Args:
        in_channels: backbone channels ({"c3": 128, "c4": 256, "c5": 512} for ResNet-18/34).
        out_channels: 128 in the paper.
        in_features: finest first.
        lateral: "fsm" or "conv" (1x1 conv with bias).
        align: use an FAM on the upsampled map.
        fuse: "concat" (concatenate then 1x1 conv) or "sum".
        deformable_groups: of the FAM's DCN (8, as in FaPN).
    """

    def __init__(
        self,
        in_channels: Mapping[str, int],
        out_channels: int = 128,
        *,
        in_features: Sequence[str] = ("c3", "c4", "c5"),
        lateral: str = "fsm",
        align: bool = True,
        fuse: str = "concat",
        deformable_groups: int = 8,
    ) -> None:
        super().__init__()
        if lateral not in ("fsm", "conv"):
            raise ValueError(f"lateral: expected 'fsm' or 'conv', got {lateral!r}")
        if fuse not in ("concat", "sum"):
            raise ValueError(f"fuse: expected 'concat' or 'sum', got {fuse!r}")
        self.in_features = tuple(in_features)
        self.out_channels = out_channels
        self.fuse = fuse
        self.lateral = nn.ModuleDict()
        self.align = nn.ModuleDict()
        self.merge = nn.ModuleDict()
        numbers = [int(name[1:]) for name in self.in_features]
        for name, number in zip(self.in_features, numbers):
            level = f"p{number}"
            if lateral == "fsm":
                self.lateral[level] = FeatureSelection(in_channels[name], out_channels)
            else:
                self.lateral[level] = nn.Conv2d(in_channels[name], out_channels, kernel_size=1)
                c2_xavier_fill(self.lateral[level])
            if number == numbers[-1]:
                continue
            if align:
                self.align[level] = FeatureAlignment(
                    out_channels, level=level, deformable_groups=deformable_groups, upsample="nearest"
                )
            if fuse == "concat":
                self.merge[level] = nn.Conv2d(2 * out_channels, out_channels, kernel_size=1)
                c2_xavier_fill(self.merge[level])
        self.strides: dict[str, int] = {f"p{n}": 2**n for n in numbers}

    def forward(self, features: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        top = self.in_features[-1]
        previous = self.lateral[f"p{top[1:]}"](features[top])
        results = {f"p{top[1:]}": previous}
        for name in reversed(self.in_features[:-1]):
            level = f"p{name[1:]}"
            reference = self.lateral[level](features[name])
            if level in self.align:
                upsampled = self.align[level](previous, reference)
            else:
                upsampled = resize_to(previous, reference.shape[-2:], "nearest")
            if self.fuse == "concat":
                previous = self.merge[level](torch.cat([upsampled, reference], dim=1))
            else:
                previous = upsampled + reference
            results[level] = previous
        return OrderedDict((level, results[level]) for level in self.strides)


def build_realtime_segmenter(
    num_classes: int,
    *,
    depth: int,
    neck: Callable[..., nn.Module],
    neck_options: Mapping | None = None,
    neck_channels: int = 128,
    head_channels: int = 128,
    backbone_weights: str | Path | None = None,
    frozen_bn: bool | None = None,
    freeze_stem: bool = False,
) -> PyramidSegmenter:
    """ResNet-18/34 + real-time neck + prediction layer on P3 (FaPN supplementary section 2).

    The backbone's BatchNorm follows models.backbones.resnet (frozen when `backbone_weights` are given, as FaPN
    states for all experiments of the main paper, appendix A, which includes the real-time Table 8).
    """
    backbone = ResNetBackbone(depth, frozen_bn=frozen_bn, freeze_stem=freeze_stem, weights=backbone_weights)
    pyramid = neck(backbone.out_channels, neck_channels, **dict(neck_options or {}))
    head = ConvPredictionHead(pyramid.out_channels, num_classes, channels=head_channels, in_feature="p3")
    return PyramidSegmenter(backbone, pyramid, head, num_classes)
