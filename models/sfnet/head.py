"""SFNet's prediction head (fusion of all pyramid levels at 1/4) and its deep-supervision heads.

Facts from the SFNet authors' code (SFSegNets network/sfnet_resnet.py, `UperNetAlignHead`):
- fusion: every coarser level is upsampled bilinearly (align_corners=True) to the finest level's size and
  concatenated after it ([P2, P3, P4, P5]); a 3x3 conv (no bias) - BN - ReLU reduces the L * C channels to
  C, and a 1x1 conv (with bias) predicts the classes ("conv_last");
- deep supervision ("fpn_dsn"): on each fused map f below the top, a 3x3 conv (with bias) - BN - ReLU -
  Dropout2d(0.1) - 1x1 conv (with bias); training only, each loss weighted 1 (loss.py, CriterionSFNet).

`fusion="fam"` follows the paper's text instead (section 3.3: "we also replace these up-sampling
operations with the proposed FAM"): one FAM per coarser level, with the finest level as the reference. It
adds 3 FAMs (56,064 parameters with ResNet-18, fpn_dim 128) that the official model does not have: the
paper's 12.87M (SFNet Tables 3, 4) and "3 FAMs are involved" (Table 2(b)) match the code, so the
registered paper rows use `fusion="bilinear"`. Those FAMs report under "<level>_to_<finest>", e.g. "p3_to_p2".

Initialisation is not part of the paper and the authors' code leaves PyTorch's defaults; we keep those,
except for the 1x1 classifiers, which get the zoo's convention for prediction layers (c2_msra_fill, as
detectron2's semantic heads in models/heads/semantic_fpn.py and prediction.py), so that all segmentation
heads of the suite start from comparable logit scales.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from alignbench.models.layers import c2_msra_fill
from alignbench.models.sfnet.decoder import FlowAlignment, upsample_aligned_corners

FUSIONS = ("bilinear", "fam")


class SFNetFusionHead(nn.Module):
    """Concatenate every level at the finest level's size, 3x3 conv-BN-ReLU, 1x1 classifier.

    `forward(features)` returns logits at the finest level's resolution (stride 4 with ResNets).
    `hidden_channels` is the fusion conv's width (default `channels`, as in the authors' code).
    """

    def __init__(
        self,
        channels: int,
        levels: Sequence[str],
        num_classes: int,
        *,
        fusion: str = "bilinear",
        flow_kernel_size: int = 3,
        hidden_channels: int | None = None,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion: expected one of {FUSIONS}, got {fusion!r}")
        self.levels = tuple(levels)
        self.fusion = fusion
        finest = self.levels[0]
        self.align = nn.ModuleDict()
        if fusion == "fam":
            for level in self.levels[1:]:
                self.align[level] = FlowAlignment(channels, level=f"{level}_to_{finest}", kernel_size=flow_kernel_size)
        hidden = hidden_channels or channels
        self.fuse = nn.Sequential(
            nn.Conv2d(len(self.levels) * channels, hidden, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(hidden, num_classes, kernel_size=1)
        c2_msra_fill(self.classifier)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        finest = features[self.levels[0]]
        maps = [finest]
        for level in self.levels[1:]:
            if level in self.align:
                maps.append(self.align[level](finest, features[level]))
            else:
                maps.append(upsample_aligned_corners(features[level], finest.shape[-2:]))
        return self.classifier(self.fuse(torch.cat(maps, dim=1)))


class DeepSupervisionHead(nn.Module):
    """SFNet's training-only auxiliary classifier on one fused map (see the module docstring)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
            nn.Conv2d(channels, num_classes, kernel_size=1),
        )
        c2_msra_fill(self.layers[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
