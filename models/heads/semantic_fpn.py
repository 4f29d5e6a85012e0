"""The Semantic-FPN head (Kirillov et al., Panoptic FPN, semantic branch).

Facts from detectron2 (modeling/meta_arch/semantic_seg.py, SemSegFPNHead, and config/defaults.py
MODEL.SEM_SEG_HEAD: IN_FEATURES p2..p5, CONVS_DIM 128, COMMON_STRIDE 4, NORM "GN", IGNORE_VALUE 255,
LOSS_WEIGHT 1.0): each level gets max(1, log2(stride / 4)) blocks of [3x3 conv (no bias) - GroupNorm(32)
- ReLU], each block followed by a bilinear 2x upsampling while the level is coarser than 1/4; the
levels are summed and a 1x1 conv predicts the classes at stride 4. Convs use c2_msra_fill.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from alignbench.models.heads.common import upsampled_cross_entropy
from alignbench.models.layers import c2_msra_fill, resize_to


class SemanticFPNHead(nn.Module):
    """Panoptic-FPN semantic branch: `forward(features)` returns stride-4 logits."""

    def __init__(
        self,
        in_channels: int,
        in_strides: Mapping[str, int],
        num_classes: int,
        *,
        channels: int = 128,
        common_stride: int = 4,
        in_features: Sequence[str] = ("p2", "p3", "p4", "p5"),
        ignore_index: int = 255,
        loss_weight: float = 1.0,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"class_weights: expected {num_classes} weights, one per class, got {len(class_weights)}")
        # not a parameter or a persistent buffer: a training choice, not part of the model's weights
        self.register_buffer("class_weights", None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32),
                             persistent=False)
        self.in_features = tuple(in_features)
        self.common_stride = common_stride
        self.ignore_index = ignore_index
        self.loss_weight = loss_weight
        self.scale_heads = nn.ModuleDict()
        for name in self.in_features:
            stride = in_strides[name]
            steps = max(1, int(math.log2(stride) - math.log2(common_stride)))
            layers: list[nn.Module] = []
            for step in range(steps):
                conv = nn.Conv2d(in_channels if step == 0 else channels, channels, 3, padding=1, bias=False)
                c2_msra_fill(conv)
                layers += [conv, nn.GroupNorm(32, channels), nn.ReLU(inplace=True)]
                if stride != common_stride:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads[name] = nn.Sequential(*layers)
        self.predictor = nn.Conv2d(channels, num_classes, kernel_size=1)
        c2_msra_fill(self.predictor)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits at the common stride (1/4), sized like the finest input feature."""
        summed = None
        for name in self.in_features:
            x = self.scale_heads[name](features[name])
            # Inputs padded to a multiple of 32 make the sizes agree; this guards unpadded inputs.
            summed = x if summed is None else summed + resize_to(x, summed.shape[-2:], "bilinear")
        return self.predictor(summed)

    def losses(self, features: Mapping[str, torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = upsampled_cross_entropy(self(features), targets, self.ignore_index, self.class_weights)
        return {"loss_sem_seg": self.loss_weight * loss}
