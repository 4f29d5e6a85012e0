"""FaPN (Huang et al., ICCV 2021): feature selection (FSM) and feature alignment (FAM) in an FPN-style neck,
plus the ablation variants of FaPN Table 1.

Facts used (FaPN paper sections 3.1-3.2 and the authors' detectron2/modeling/backbone/fan.py):
- FSM: u = sigmoid(conv1x1_{C->C, no bias}(global average pool(x))); output = conv1x1_{C->out, no bias}(x + u * x).
  No norm, no activation.
- FAM: the coarse map is upsampled bilinearly (align_corners=False) to the fine size (P_i^u); the offset
  feature is conv1x1_{2C->C, no bias}([FSM(C_{i-1}), 2 * P_i^u]); a modulated deformable conv v2 (3x3,
  8 deformable groups, zero-initialised offset / mask conv) samples P_i^u; aligned = relu(DCN(P_i^u));
  the level's merged map is aligned + FSM(C_{i-1}).
- Neck: res5 gets a plain 1x1 lateral conv (with bias) and no 3x3 output conv; P2-P4 are the merged maps
  followed by a 3x3 output conv (with bias); the map before the output conv is what passes down.
  Convs use c2_xavier_fill. P6 = 1x1 max-pool of P5 for detection.
- Parameters with R50, 256 channels: FaPN neck 7.79M (FPN neck 3.34M).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from alignbench.models.capture import AlignmentModule
from alignbench.models.layers import c2_xavier_fill, max_pool_p6, resize_to
from alignbench.models.ops.deform import ModulatedDeformConv2d

LATERALS = ("fsm", "se", "conv")
ALIGNMENTS = ("fam", "deconv", "fam_after_fusion")


class FeatureSelection(nn.Module):
    """FSM (FaPN eq. 4): channel attention with a skip connection, then a 1x1 channel reduction.

    With `skip=False` it is the "SE" of FaPN Table 1 row "FPN + FAM + SE": the paper (section 3.2) says
    FSM is motivated by squeeze-and-excitation and that "the main difference lies in the additional skip
    connection", so SE here is the same module without the skip (output = conv(u * x)). That reading keeps
    the parameter count equal to FaPN's, as the table reports (33.1M for both rows); a classic SE block
    with a 1/16 bottleneck would give 31.9M.
    """

    def __init__(self, in_channels: int, out_channels: int, *, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        self.attention = nn.Conv2d(in_channels, in_channels, kernel_size=1, bias=False)
        self.reduce = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        c2_xavier_fill(self.attention)
        c2_xavier_fill(self.reduce)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        importance = torch.sigmoid(self.attention(x.mean(dim=(2, 3), keepdim=True)))
        scaled = x * importance
        return self.reduce(x + scaled if self.skip else scaled)


class FeatureAlignment(AlignmentModule):
    """FAM (FaPN eq. 1): align the upsampled coarse map P_i^u to the reference FSM(C_{i-1}).

    `forward(coarse, reference)` returns the aligned map relu(DCN(P_i^u)); the caller merges it with the
    reference (sum in FaPN, concatenation in the real-time variant). Reports, for `models.capture`:
    upsampled (P_i^u), reference, aligned, offset (B, 2*8*9, H, W) and mask (B, 8*9, H, W).

    Args:
        channels: width of both inputs.
        level: pyramid level produced, e.g. "p2".
        deformable_groups: 8 in FaPN.
        upsample: "bilinear" (FaPN code) or "nearest" (real-time FaPN, supplementary section 2).
    """

    def __init__(self, channels: int, *, level: str, deformable_groups: int = 8, upsample: str = "bilinear") -> None:
        super().__init__(level)
        self.upsample = upsample
        self.offset = nn.Conv2d(2 * channels, channels, kernel_size=1, bias=False)
        c2_xavier_fill(self.offset)
        self.dcn = ModulatedDeformConv2d(channels, channels, 3, deformable_groups=deformable_groups)

    def forward(self, coarse: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        upsampled = resize_to(coarse, reference.shape[-2:], self.upsample)
        # The factor 2 on the upsampled map is in the official code (fan.py: `feat_up * 2`).
        offset_feature = self.offset(torch.cat([reference, upsampled * 2], dim=1))
        output, offset, mask = self.dcn(upsampled, offset_feature)
        aligned = F.relu(output)
        if self.capturing:
            self.report(upsampled=upsampled, reference=reference, aligned=aligned, offset=offset, mask=mask)
        return aligned


class PostFusionAlignment(AlignmentModule):
    """FAM placed after feature fusion (FaPN Table 1 row "FPN + FAM† + FSM").

    Interpretation: the coarse map is upsampled (bilinear, as in FAM) and summed with the reference
    FSM(C_{i-1}); the DCN then learns its offsets "from the fused features instead" (section 4.1) and
    samples the fused map: output = relu(DCN(fused)). With a single fused input there is no
    concatenation to compress, so FAM's 1x1 offset conv (2C -> C) is dropped and the DCN's own 3x3
    offset / mask conv reads the fused map. This gives 32.68M parameters with R50, as the table
    reports (32.7M); keeping a 1x1 (C -> C) offset conv would give 32.88M.
    """

    def __init__(self, channels: int, *, level: str, deformable_groups: int = 8) -> None:
        super().__init__(level)
        self.dcn = ModulatedDeformConv2d(channels, channels, 3, deformable_groups=deformable_groups)

    def forward(self, coarse: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        upsampled = resize_to(coarse, reference.shape[-2:], "bilinear")
        fused = upsampled + reference
        output, offset, mask = self.dcn(fused, fused)
        aligned = F.relu(output)
        if self.capturing:
            self.report(
                upsampled=upsampled, reference=reference, fused=fused, aligned=aligned, offset=offset, mask=mask
            )
        return aligned


class DeconvUpsample(nn.Module):
    """Learnable 2x upsampling (FaPN Table 1 row "FPN + deconv + FSM"): ConvTranspose2d, kernel 4, stride 2.

    The paper names only "deconvolution, a learnable upsample operation"; kernel 4 / stride 2 / padding 1
    is the usual exact-2x deconvolution and gives 32.56M parameters with R50 (paper 32.7M, -0.4%); a 3x3
    kernel would give 31.2M. The result is cropped to the fine map when that map has odd size.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=2, padding=1)
        c2_xavier_fill(self.deconv)

    def forward(self, coarse: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        upsampled = self.deconv(coarse)
        height, width = size
        if upsampled.shape[-2] < height or upsampled.shape[-1] < width:
            return resize_to(upsampled, (height, width), "bilinear")
        return upsampled[..., :height, :width]


class FaPN(nn.Module):
    """Feature-aligned Pyramid Network neck and its FaPN Table 1 variants.

    Args:
        in_channels: channels of the backbone features, e.g. {"c2": 256, ..., "c5": 2048}.
        out_channels: pyramid width (256).
        in_features: backbone features, finest first; the coarsest gets a plain 1x1 lateral.
        lateral: how C_{i-1} is reduced for i-1 < 5: "fsm" (FaPN), "se" (FSM without skip, see
            FeatureSelection) or "conv" (FPN's 1x1 conv with bias, rows "FPN + FAM").
        align: how the coarser level joins: "fam" (FAM then sum), "deconv" (DeconvUpsample then sum,
            no alignment) or "fam_after_fusion" (PostFusionAlignment).
        deformable_groups: of the DCN (8).
        top_block: add "p6" = 1x1 max-pool of P5 (detection).

    All variants keep FaPN's layout (no output conv on P5), so that each row differs from FaPN only in
    the component the table names.
    """

    def __init__(
        self,
        in_channels: Mapping[str, int],
        out_channels: int = 256,
        *,
        in_features: Sequence[str] = ("c2", "c3", "c4", "c5"),
        lateral: str = "fsm",
        align: str = "fam",
        deformable_groups: int = 8,
        top_block: bool = False,
    ) -> None:
        super().__init__()
        if lateral not in LATERALS:
            raise ValueError(f"lateral: expected one of {LATERALS}, got {lateral!r}")
        if align not in ALIGNMENTS:
            raise ValueError(f"align: expected one of {ALIGNMENTS}, got {align!r}")
        self.in_features = tuple(in_features)
        self.out_channels = out_channels
        self.align_mode = align
        self.top_block = top_block
        levels = [int(name[1:]) for name in self.in_features]
        self.top_level = f"p{levels[-1]}"
        self.top_lateral = nn.Conv2d(in_channels[self.in_features[-1]], out_channels, kernel_size=1)
        c2_xavier_fill(self.top_lateral)
        self.lateral = nn.ModuleDict()
        self.align = nn.ModuleDict()
        self.output = nn.ModuleDict()
        for name, number in zip(self.in_features[:-1], levels[:-1]):
            level = f"p{number}"
            channels = in_channels[name]
            if lateral == "conv":
                self.lateral[level] = nn.Conv2d(channels, out_channels, kernel_size=1)
                c2_xavier_fill(self.lateral[level])
            else:
                self.lateral[level] = FeatureSelection(channels, out_channels, skip=lateral == "fsm")
            if align == "fam":
                self.align[level] = FeatureAlignment(out_channels, level=level, deformable_groups=deformable_groups)
            elif align == "fam_after_fusion":
                self.align[level] = PostFusionAlignment(out_channels, level=level, deformable_groups=deformable_groups)
            else:
                self.align[level] = DeconvUpsample(out_channels)
            self.output[level] = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
            c2_xavier_fill(self.output[level])
        self.strides: dict[str, int] = {f"p{n}": 2**n for n in levels}
        if top_block:
            self.strides[f"p{levels[-1] + 1}"] = 2 ** (levels[-1] + 1)

    def forward(self, features: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        previous = self.top_lateral(features[self.in_features[-1]])
        results = {self.top_level: previous}
        for name in reversed(self.in_features[:-1]):
            level = f"p{name[1:]}"
            reference = self.lateral[level](features[name])
            if self.align_mode == "fam":
                merged = self.align[level](previous, reference) + reference
            elif self.align_mode == "deconv":
                merged = self.align[level](previous, reference.shape[-2:]) + reference
            else:
                merged = self.align[level](previous, reference)
            results[level] = self.output[level](merged)
            previous = merged
        if self.top_block:
            results[f"p{int(self.top_level[1:]) + 1}"] = max_pool_p6(results[self.top_level])
        return OrderedDict((level, results[level]) for level in self.strides)
