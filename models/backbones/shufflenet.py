"""torchvision ShuffleNetV2 (Ma et al., 2018) as a feature extractor returning C2..C5 (strides 4, 8, 16, 32).

SFNet Table 1(d) uses ShuffleNetV2 as a light backbone; the paper gives no detail and the SFNet authors' code
has no ShuffleNet model. Interpretation: C2 is the stem after its max-pool (24 channels at x1.0), C3..C5 the
outputs of stage2..stage4, and by default C5 also goes through the network's final 1x1 conv (`conv5`,
464 -> 1024 channels), which belongs to the ImageNet feature extractor (only the classifier `fc` is
dropped). Table 1(d)'s FLOPs support this reading (see models/sfnet/zoo.py).

Attribute names are torchvision's, so a torchvision-format state dict loads as is (its `fc.*` is dropped).
BatchNorm is ordinary (trainable): SFNet trains every BatchNorm layer (the authors' code uses SyncBN).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn

from alignbench.models.backbones.resnet import load_backbone_weights

_BUILDERS = {
    "x0_5": torchvision.models.shufflenet_v2_x0_5,
    "x1_0": torchvision.models.shufflenet_v2_x1_0,
    "x1_5": torchvision.models.shufflenet_v2_x1_5,
    "x2_0": torchvision.models.shufflenet_v2_x2_0,
}


class ShuffleNetV2Backbone(nn.Module):
    """ShuffleNetV2 bottom-up pathway: `forward(x)` returns OrderedDict c2..c5.

    Args:
        width: "x0_5", "x1_0" (SFNet's), "x1_5" or "x2_0".
        include_conv5: pass C5 through the final 1x1 conv-BN-ReLU (1024 channels at x1.0).
        weights: path of a local torchvision-format state dict (None: random initialisation).
    """

    def __init__(self, width: str = "x1_0", *, include_conv5: bool = True, weights: str | Path | None = None) -> None:
        super().__init__()
        if width not in _BUILDERS:
            raise ValueError(f"width: expected one of {tuple(_BUILDERS)}, got {width!r}")
        net = _BUILDERS[width](weights=None)
        self.width = width
        self.include_conv5 = include_conv5
        self.conv1, self.maxpool = net.conv1, net.maxpool
        self.stage2, self.stage3, self.stage4 = net.stage2, net.stage3, net.stage4
        self.conv5 = net.conv5 if include_conv5 else None
        stage_channels = net._stage_out_channels  # [24, 116, 232, 464, 1024] at x1.0
        c5 = stage_channels[4] if include_conv5 else stage_channels[3]
        self.out_channels: dict[str, int] = {
            "c2": stage_channels[0], "c3": stage_channels[1], "c4": stage_channels[2], "c5": c5
        }
        self.strides: dict[str, int] = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
        if weights is not None:
            ignored = ("fc.",) if include_conv5 else ("fc.", "conv5.")
            load_backbone_weights(self, weights, f"ShuffleNetV2 {width}", ignored_prefixes=ignored)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        c2 = self.maxpool(self.conv1(x))
        c3 = self.stage2(c2)
        c4 = self.stage3(c3)
        c5 = self.stage4(c4)
        if self.conv5 is not None:
            c5 = self.conv5(c5)
        return OrderedDict([("c2", c2), ("c3", c3), ("c4", c4), ("c5", c5)])
