"""The prediction layer of the real-time FaPN (FaPN supplementary section 2: "we append a prediction layer
on P3 to generate the final semantic mask").

Interpretation: 3x3 conv (no bias) - BatchNorm - ReLU, then a 1x1 classifier, the usual segmentation
output block of real-time networks (BiSeNet, SwiftNet). The text does not describe the layer; a bare 1x1
classifier would make the Table I "FPN" row 11.29M parameters against the paper's 11.4M, with the 3x3
block it is 11.43M. The logits are upsampled to the input size by the model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from alignbench.models.heads.common import upsampled_cross_entropy
from alignbench.models.layers import c2_msra_fill


class ConvPredictionHead(nn.Module):
    """conv3x3-BN-ReLU + conv1x1 on one pyramid level (default "p3", stride 8)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        channels: int = 128,
        in_feature: str = "p3",
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        self.in_feature = in_feature
        self.ignore_index = ignore_index
        self.conv = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)
        c2_msra_fill(self.conv)
        c2_msra_fill(self.classifier)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.relu(self.norm(self.conv(features[self.in_feature]))))

    def losses(self, features: Mapping[str, torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss_sem_seg": upsampled_cross_entropy(self(features), targets, self.ignore_index)}
