"""DFNet V1 / V2 ("DF1" / "DF2", Li et al., Partial Order Pruning, CVPR 2019): SFNet's real-time backbones.

Architecture facts from the SFNet authors' code (SFSegNets network/dfnet.py, classes dfnetv1 / dfnetv2):
- stem ("stage1"): 3x3 conv 3 -> 32 (stride 2), BN, ReLU, 3x3 conv 32 -> 64 (stride 2), BN, ReLU (stride 4);
- then stacks of ResNet basic blocks (3x3 convs without bias, BN, 1x1 projection shortcut when the
  stride or the width changes), widths / depths / strides:
  DF1: 64 x 3 (s2), 128 x 3 (s2), 256 x 3 (s2), 512 x 1 (s1);
  DF2: 64 x 2 (s2), 128 x 1, 128 x 10 (s2), 256 x 1, 256 x 4 (s2), 512 x 2;
- the SFNet head takes three maps (SFSegNets network/sfnet_dfnet.py: fpn_inplanes [128, 256, 512],
  fpn_dim 64): DF1 returns the 128-, 256- and 512-channel stage outputs at strides 16, 32, 32; DF2 the
  outputs after "stage2_2", "stage3_2" and "stage4_2" at strides 8, 16, 32.

We name the three maps c3, c4, c5 (in that order) and report their true strides. BatchNorm is trainable.
Attribute names follow that code (stage1, stage2, ... / stage2_1, ...) so its ImageNet checkpoints
(df1_imagenet.pth / df2_imagenet.pth) load; their classifier keys ("fc.*") are ignored.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from alignbench.models.backbones.resnet import load_backbone_weights

# (attribute name, width, blocks, stride, output name or None); strides accumulate from the stem's 4.
_STAGES = {
    1: (
        ("stage2", 64, 3, 2, None),
        ("stage3", 128, 3, 2, "c3"),
        ("stage4", 256, 3, 2, "c4"),
        ("stage5", 512, 1, 1, "c5"),
    ),
    2: (
        ("stage2_1", 64, 2, 2, None),
        ("stage2_2", 128, 1, 1, "c3"),
        ("stage3_1", 128, 10, 2, None),
        ("stage3_2", 256, 1, 1, "c4"),
        ("stage4_1", 256, 4, 2, None),
        ("stage4_2", 512, 2, 1, "c5"),
    ),
}


def _stage(in_channels: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    shortcut = None
    if stride != 1 or in_channels != width:
        shortcut = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(width)
        )
    layers = [BasicBlock(in_channels, width, stride, shortcut)]
    layers += [BasicBlock(width, width) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class DFNetBackbone(nn.Module):
    """DF1 (`version=1`) or DF2 (`version=2`): `forward(x)` returns OrderedDict c3, c4, c5."""

    def __init__(self, version: int = 1, *, weights: str | Path | None = None) -> None:
        super().__init__()
        if version not in _STAGES:
            raise ValueError(f"version: expected 1 or 2 (DF1 / DF2), got {version!r}")
        self.version = version
        self.stage1 = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self._outputs: dict[str, str] = {}
        self.out_channels: dict[str, int] = {}
        self.strides: dict[str, int] = {}
        channels, stride = 64, 4
        for name, width, blocks, step, output in _STAGES[version]:
            self.add_module(name, _stage(channels, width, blocks, step))
            channels, stride = width, stride * step
            if output is not None:
                self._outputs[name] = output
                self.out_channels[output] = width
                self.strides[output] = stride
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if weights is not None:
            load_backbone_weights(self, weights, f"DF{version}")

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        x = self.stage1(x)
        features: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name, *_ in _STAGES[self.version]:
            x = getattr(self, name)(x)
            if name in self._outputs:
                features[self._outputs[name]] = x
        return features
