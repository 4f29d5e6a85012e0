"""Context modules applied to the coarsest backbone map (SFNet's "context head", SFNet Table 1(c)).

Each maps (B, in_channels, h, w) to (B, out_channels, h, w): SFNet treats the context module and the last
residual stage together as the top level of its FPN (section 3.3), so the module's output is the top
pyramid level (fpn_dim channels).

- PPM (PSPNet, Zhao et al. 2017), facts from the SFNet authors' code (SFSegNets network/nn/operators.py,
  PSPModule, out_features = fpn_dim): for each bin size b in (1, 2, 3, 6): adaptive average pool to b x b,
  1x1 conv (no bias), BatchNorm (no ReLU), bilinear upsampling with align_corners=True; the four maps and
  the input are concatenated and reduced by a 1x1 conv (no bias), BatchNorm, ReLU, Dropout2d(0.1).
- NL, ASPP, DenseASPP: the paper only names them (Table 1(c)); the authors' code has no SFNet variant
  with them. Interpretations, each documented on its class, keep them at the same place with the same
  output width as PPM.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> nn.Sequential:
    """conv (no bias) - BatchNorm - ReLU with "same" padding."""
    padding = dilation * (kernel_size // 2)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _upsample(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class PyramidPooling(nn.Module):
    """PPM with the SFNet code's layers (see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(bin_size),
                nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
                nn.BatchNorm2d(out_channels),
            )
            for bin_size in bins
        )
        self.bottleneck = nn.Sequential(
            nn.Conv2d(in_channels + len(bins) * out_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        priors = [_upsample(stage(x), size) for stage in self.stages]
        return self.bottleneck(torch.cat([*priors, x], dim=1))


class NonLocalContext(nn.Module):
    """"+NL" of SFNet Table 1(c): a non-local block (Wang et al. 2018, embedded Gaussian) as context head.

    Interpretation: a 1x1 conv-BN-ReLU first reduces the input to `out_channels` (as PPM's bottleneck and
    the FPN laterals do); the non-local block then works at that width with the usual half-width
    embeddings: theta, phi, g are 1x1 convs (out -> out/2, with bias), attention = softmax over positions
    of theta^T phi, y = g-weighted sum, W = 1x1 conv (out/2 -> out, no bias) + BatchNorm with zero-initialised
    scale (the block starts as the identity, as Wang et al. recommend), output = x + W(y).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        inner = max(1, out_channels // 2)
        self.reduce = conv_bn_relu(in_channels, out_channels)
        self.theta = nn.Conv2d(out_channels, inner, kernel_size=1)
        self.phi = nn.Conv2d(out_channels, inner, kernel_size=1)
        self.g = nn.Conv2d(out_channels, inner, kernel_size=1)
        self.project = nn.Sequential(
            nn.Conv2d(inner, out_channels, kernel_size=1, bias=False), nn.BatchNorm2d(out_channels)
        )
        nn.init.zeros_(self.project[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        batch, _, height, width = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        phi = self.phi(x).flatten(2)  # (B, C', HW)
        g = self.g(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        attention = torch.softmax(torch.bmm(theta, phi), dim=-1)
        y = torch.bmm(attention, g).transpose(1, 2).reshape(batch, -1, height, width)
        return x + self.project(y)


class ASPP(nn.Module):
    """"+ASPP" of SFNet Table 1(c): DeepLabv3's atrous spatial pyramid pooling (Chen et al. 2017).

    Branches as in DeepLabv3 and the SFNet authors' ASPP module (network/nn/operators.py): a 1x1 conv and
    three 3x3 atrous convs (rates 6, 12, 18, that module's output-stride-16 default) with BN + ReLU, and an
    image-pooling branch (global average pool, 1x1 conv-BN-ReLU, upsampled); each branch has
    `out_channels` channels. Interpretation: the five maps are concatenated and projected back to
    `out_channels` by a 1x1 conv-BN-ReLU, DeepLabv3's projection (that module returns the concatenation).
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int] = (6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(in_channels, out_channels)])
        self.branches.extend(conv_bn_relu(in_channels, out_channels, 3, dilation=rate) for rate in rates)
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv_bn_relu(in_channels, out_channels))
        self.project = conv_bn_relu((len(rates) + 2) * out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [_upsample(self.image_pool(x), x.shape[-2:])]
        maps += [branch(x) for branch in self.branches]
        return self.project(torch.cat(maps, dim=1))


class DenseASPP(nn.Module):
    """"+DenseASPP" of SFNet Table 1(c) (Yang et al. 2018): densely connected atrous convolutions.

    Layers as in DenseASPP and the SFNet authors' DenseBlock (network/nn/operators.py): each of the
    dilation rates (3, 6, 12, 18, 24) adds a unit BN - ReLU - 1x1 conv (-> `inner_channels`) - BN - ReLU -
    3x3 atrous conv (-> `growth` channels) whose input is the concatenation of the block input and every
    earlier unit's output (the first unit starts without the BN, DenseBlock's bn_start=False). DenseASPP's
    widths for a 2048-channel input are 512 / 128; we scale them to the input (in/2 and in/8: 256 / 64 for
    ResNet-18's 512 channels). Interpretation: the concatenation of everything is projected to
    `out_channels` by a 1x1 conv-BN-ReLU, like the other context heads; the units' dropout is left out.
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int] = (3, 6, 12, 18, 24)) -> None:
        super().__init__()
        inner_channels, growth = max(1, in_channels // 2), max(1, in_channels // 8)
        self.units = nn.ModuleList()
        width = in_channels
        for index, rate in enumerate(rates):
            layers: list[nn.Module] = [] if index == 0 else [nn.BatchNorm2d(width)]
            layers += [
                nn.ReLU(inplace=False),
                nn.Conv2d(width, inner_channels, kernel_size=1),
                nn.BatchNorm2d(inner_channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(inner_channels, growth, kernel_size=3, padding=rate, dilation=rate),
            ]
            self.units.append(nn.Sequential(*layers))
            width += growth
        self.project = conv_bn_relu(width, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x
        for unit in self.units:
            features = torch.cat([features, unit(features)], dim=1)
        return self.project(features)


class LateralContext(nn.Module):
    """No context module: the coarsest map gets the plain SFNet lateral, 1x1 conv (with bias) - BN - ReLU
    (SFNet Table 1(a) rows without PPM; the authors' fpn_in layers)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.lateral = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lateral(x)


CONTEXT_MODULES = {
    "ppm": PyramidPooling,
    "nl": NonLocalContext,
    "aspp": ASPP,
    "denseaspp": DenseASPP,
    "none": LateralContext,
}


def build_context(name: str, in_channels: int, out_channels: int) -> nn.Module:
    """A context module by name: "ppm", "nl", "aspp", "denseaspp" or "none" (a plain lateral)."""
    if name not in CONTEXT_MODULES:
        raise ValueError(f"context: expected one of {tuple(CONTEXT_MODULES)}, got {name!r}")
    return CONTEXT_MODULES[name](in_channels, out_channels)
