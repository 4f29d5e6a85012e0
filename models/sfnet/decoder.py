"""SFNet (Li et al., ECCV 2020): the Flow Alignment Module (FAM) and the aligned FPN decoder.

Facts from the SFNet authors' code (SFSegNets network/nn/operators.py `AlignedModule` and
network/sfnet_resnet.py `UperNetAlignHead`), kept exactly:
- FAM: two 1x1 convs (C -> C/2, no bias) reduce the fine map and the coarse map; the reduced coarse map is
  upsampled bilinearly (align_corners=True) to the fine size; a k x k conv (k = 3, no bias) on
  concat(reduced coarse, reduced fine) predicts a 2-channel flow; the ORIGINAL coarse map is warped at
  the fine size by `models.ops.flow_warp` (grid_sample, align_corners=True, zero padding): warping and
  upsampling in one step.
- Decoder: the context module (PPM) on C5 gives the top level; for each finer level, top-down,
  lateral = 1x1 conv (with bias) - BN - ReLU of C_l, f = lateral + FAM(lateral, f), and the level's output
  is a 3x3 conv (no bias) - BN - ReLU of f, while f itself passes down. The top level has no output conv.
- Without FAM (the "FPN" rows of SFNet Table 1) f is upsampled bilinearly with align_corners=True (the
  code's `Upsample`).

Interpretations, for the ablations the code does not contain:
- SFNet Table 1(b) ("FAM at F3 / F4 / F5"): F_l is the level whose upsampling FAM replaces, so FAM at F5
  aligns the context output into level 4 (our level "p4"); `align_levels` names the *produced* levels.
- SFNet Table 2(b): k in {1, 3, 5, 7} with "same" padding k // 2 (the code pads by 1 for every k).
- SFNet Table 2(d) ("DCN in place of FAM"): "we apply DCN on the concatenated feature map of bilinear
  upsampled feature map and the feature map of next level": a 3x3 DCN (v1, Dai et al. 2017, one
  deformable group, zero-initialised offset conv reading the same concatenation) maps concat(bilinearly
  upsampled f, lateral) (2C) to C channels, and takes FAM's place: f = lateral + DCN(...).

Capture (`models.capture`): every FAM reports under the level it produces ("p2", "p3", "p4"): "flow"
(B, 2, H, W), "warped" (the aligned coarse map), "reference" (the lateral it aligns to) and "upsampled"
(the plain bilinear upsampling, align_corners=True, for comparison); the DCN variant reports "offset"
instead of "flow".
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from alignbench.models.capture import AlignmentModule
from alignbench.models.ops.deform import ModulatedDeformConv2d
from alignbench.models.ops.flow import flow_warp
from alignbench.models.sfnet.context import build_context

ALIGNMENTS = ("fam", "dcn", "none")


def upsample_aligned_corners(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with align_corners=True, SFNet's `Upsample` (returns `x` when the size matches)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class FlowAlignment(AlignmentModule):
    """FAM: warp the coarse map to the fine map's size along a flow predicted from both.

    `forward(fine, coarse)` returns the coarse map (C channels) warped at the fine size; the caller adds the
    fine map. The flow conv keeps PyTorch's default initialisation, as the authors' code does.

    Args:
        channels: C, the width of both inputs.
        level: the pyramid level produced, e.g. "p4" (FAM at SFNet's F5).
        kernel_size: k of the flow conv (3; 1 / 5 / 7 in SFNet Table 2(b)).
    """

    def __init__(self, channels: int, *, level: str, kernel_size: int = 3) -> None:
        super().__init__(level)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        reduced = max(1, channels // 2)
        self.down_fine = nn.Conv2d(channels, reduced, kernel_size=1, bias=False)
        self.down_coarse = nn.Conv2d(channels, reduced, kernel_size=1, bias=False)
        self.flow = nn.Conv2d(2 * reduced, 2, kernel_size=kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        size = fine.shape[-2:]
        coarse_reduced = upsample_aligned_corners(self.down_coarse(coarse), size)
        flow = self.flow(torch.cat([coarse_reduced, self.down_fine(fine)], dim=1))
        warped = flow_warp(coarse, flow)
        if self.capturing:
            self.report(
                flow=flow, warped=warped, reference=fine, upsampled=upsample_aligned_corners(coarse, size)
            )
        return warped


class DeformableAlignment(AlignmentModule):
    """SFNet Table 2(d): DCN (v1) on concat(bilinear-upsampled coarse, fine) in place of FAM (see module
    docstring). Reports "offset" (B, 18, H, W), "aligned", "reference" and "upsampled"."""

    def __init__(self, channels: int, *, level: str) -> None:
        super().__init__(level)
        self.dcn = ModulatedDeformConv2d(2 * channels, channels, 3, deformable_groups=1, modulated=False)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        upsampled = upsample_aligned_corners(coarse, fine.shape[-2:])
        stacked = torch.cat([upsampled, fine], dim=1)
        aligned, offset, _ = self.dcn(stacked, stacked)
        if self.capturing:
            self.report(offset=offset, aligned=aligned, reference=fine, upsampled=upsampled)
        return aligned


def _lateral(in_channels: int, out_channels: int) -> nn.Sequential:
    """SFNet's fpn_in: 1x1 conv (with bias) - BN - ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
    )


def _output_conv(channels: int) -> nn.Sequential:
    """SFNet's fpn_out: 3x3 conv (no bias) - BN - ReLU."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


class AlignedFPN(nn.Module):
    """SFNet's decoder pyramid: context module on the coarsest map, top-down path with FAM (or DCN, or plain
    bilinear upsampling), per-level 3x3 output convs. Maps {"c2".."c5"} to {"p2".."p5"}.

    Args:
        in_channels: backbone widths, e.g. {"c2": 64, ..., "c5": 512}.
        out_channels: fpn_dim (128 with ResNet-18, 256 with ResNet-50/101).
        in_features: backbone maps to use, finest first (the last one gets the context module).
        context: "ppm" (SFNet), "nl", "aspp", "denseaspp" or "none" (a plain lateral), see
            models.sfnet.context.
        align: "fam" (SFNet), "dcn" (Table 2(d)) or "none" (FPN: bilinear upsampling).
        align_levels: the produced levels that use `align` (default: all but the top, e.g. p2, p3, p4).
        flow_kernel_size: k of FAM's flow conv.
        in_strides: the backbone maps' strides (default 2**l for "c<l>"; DFNet's differ).
    """

    def __init__(
        self,
        in_channels: Mapping[str, int],
        out_channels: int = 128,
        *,
        in_features: Sequence[str] = ("c2", "c3", "c4", "c5"),
        context: str = "ppm",
        align: str = "fam",
        align_levels: Sequence[str] | None = None,
        flow_kernel_size: int = 3,
        in_strides: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        if align not in ALIGNMENTS:
            raise ValueError(f"align: expected one of {ALIGNMENTS}, got {align!r}")
        self.in_features = tuple(in_features)
        self.levels = tuple(f"p{name[1:]}" for name in self.in_features)
        self.out_channels = out_channels
        lower = self.levels[:-1]
        align_levels = lower if align_levels is None else tuple(align_levels)
        unknown = sorted(set(align_levels) - set(lower))
        if unknown:
            raise ValueError(f"align_levels: {unknown} are not levels below the top ({lower})")
        self.context = build_context(context, in_channels[self.in_features[-1]], out_channels)
        self.lateral = nn.ModuleDict()
        self.output = nn.ModuleDict()
        self.align = nn.ModuleDict()
        for name, level in zip(self.in_features[:-1], lower):
            self.lateral[level] = _lateral(in_channels[name], out_channels)
            self.output[level] = _output_conv(out_channels)
            if align != "none" and level in align_levels:
                if align == "fam":
                    self.align[level] = FlowAlignment(out_channels, level=level, kernel_size=flow_kernel_size)
                else:
                    self.align[level] = DeformableAlignment(out_channels, level=level)
        self.strides: dict[str, int] = {
            level: (in_strides[name] if in_strides is not None else 2 ** int(name[1:]))
            for name, level in zip(self.in_features, self.levels)
        }

    def forward_with_inner(
        self, features: Mapping[str, torch.Tensor]
    ) -> tuple[OrderedDict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The pyramid {"p2".."p5"} (finest first) and the fused maps f before each output conv (for the
        deep-supervision heads, which read f in the authors' code)."""
        top = self.levels[-1]
        f = self.context(features[self.in_features[-1]])
        outputs = {top: f}
        inner: dict[str, torch.Tensor] = {}
        for name, level in zip(reversed(self.in_features[:-1]), reversed(self.levels[:-1])):
            lateral = self.lateral[level](features[name])
            if level in self.align:
                f = lateral + self.align[level](lateral, f)
            else:
                f = lateral + upsample_aligned_corners(f, lateral.shape[-2:])
            inner[level] = f
            outputs[level] = self.output[level](f)
        return OrderedDict((level, outputs[level]) for level in self.levels), inner

    def forward(self, features: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        return self.forward_with_inner(features)[0]
