"""FPN (Lin et al., 2017): 1x1 lateral convs, nearest-neighbour 2x top-down path, 3x3 output convs.

Layer facts follow detectron2's FPN with its default MODEL.FPN.NORM = "" (no norm, convs with bias,
c2_xavier_fill init), which the FaPN authors' Cityscapes configs build on (configs/Base-RCNN-FAN.yaml:
256 channels, inputs res2..res5). With R50 and the PointRend semantic head this gives 28.6M parameters,
FaPN Table 1 row "FPN / R50".

The neck interface every neck of the zoo follows (FPN, FaPN, FPT's detection neck, so that detection heads
can use any of them): `neck(features)` maps backbone features {"c2".."c5"} to {"p2".."p5"(, "p6")}; the
constructor takes `in_channels` (the backbone's `out_channels` dict); the neck exposes `out_channels` (int)
and `strides` ({"p2": 4, ...}) and holds no head logic. (SFNet's `AlignedFPN` and FPT's `UFP` are
segmentation-only pyramids.)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from alignbench.models.layers import c2_xavier_fill, max_pool_p6, resize_to


def _level(name: str) -> int:
    """"c3" -> 3."""
    return int(name[1:])


class FPN(nn.Module):
    """Feature Pyramid Network neck.

    Args:
        in_channels: channels of the backbone features, e.g. {"c2": 256, ..., "c5": 2048}.
        out_channels: width of every pyramid level (256 in the paper).
        in_features: backbone features to use, finest first, strides contiguous powers of two.
        extra_output_convs: 3x3 convs (256 -> 256, each followed by ReLU) inserted before each level's
            output conv. 0 is plain FPN. FaPN Table 1 row "FPN + extra 3x3 conv." uses 2: the paper does
            not say how many convs it adds, only that the model has 33.4M parameters; one extra conv per
            level gives 31.0M (-7%), two per level give 33.35M (-0.1%), three 33.9M (+1.6%).
        top_block: add "p6" = 1x1 max-pool (stride 2) of P5, as FPN does for detection.
    """

    def __init__(
        self,
        in_channels: Mapping[str, int],
        out_channels: int = 256,
        *,
        in_features: Sequence[str] = ("c2", "c3", "c4", "c5"),
        extra_output_convs: int = 0,
        top_block: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = tuple(in_features)
        self.out_channels = out_channels
        self.top_block = top_block
        self.lateral = nn.ModuleDict()
        self.output = nn.ModuleDict()
        for name in self.in_features:
            level = f"p{_level(name)}"
            lateral = nn.Conv2d(in_channels[name], out_channels, kernel_size=1)
            layers: list[nn.Module] = []
            for _ in range(extra_output_convs):
                layers += [nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            layers.append(nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1))
            for module in [lateral, *layers]:
                if isinstance(module, nn.Conv2d):
                    c2_xavier_fill(module)
            self.lateral[level] = lateral
            self.output[level] = nn.Sequential(*layers)
        self.strides: dict[str, int] = {f"p{_level(n)}": 2 ** _level(n) for n in self.in_features}
        if top_block:
            coarsest = max(_level(n) for n in self.in_features)
            self.strides[f"p{coarsest + 1}"] = 2 ** (coarsest + 1)

    def forward(self, features: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        levels = [f"p{_level(n)}" for n in self.in_features]
        results: dict[str, torch.Tensor] = {}
        previous = None
        for name, level in zip(reversed(self.in_features), reversed(levels)):
            lateral = self.lateral[level](features[name])
            previous = lateral if previous is None else lateral + resize_to(previous, lateral.shape[-2:], "nearest")
            results[level] = self.output[level](previous)
        if self.top_block:
            results[f"p{_level(self.in_features[-1]) + 1}"] = max_pool_p6(results[levels[-1]])
        return OrderedDict((level, results[level]) for level in self.strides)
