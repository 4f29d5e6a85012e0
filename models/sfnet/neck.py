"""FPN with SFNet's flow alignment: the neck that puts SFNet's FAM into any task scaffold.

`FlowAlignedFPN` is the FPN neck (models.fpn.FPN: 1x1 lateral convs with bias, 3x3 output convs, no norm,
c2_xavier_fill init) whose top-down upsampling is SFNet's Flow Alignment Module (models.sfnet.decoder
`FlowAlignment`, the authors' SFSegNets network/nn/operators.py `AlignedModule`): where FPN computes
f_l = lateral_l + nearest_2x(f_{l+1}), this neck computes f_l = lateral_l + FAM(lateral_l, f_{l+1}), FAM
warping the coarse map at the fine size along a flow predicted from both, as SFNet's decoder
(SFSegNets network/sfnet_resnet.py `UperNetAlignHead`) does between its levels. Everything else is FPN's,
so FPN, FaPN and this neck differ only in how the coarse level is aligned. SFNet's own decoder (PPM context,
BN-ReLU laterals) stays `models.sfnet.decoder.AlignedFPN`, used by the SFNet paper rows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from alignbench.models.layers import c2_xavier_fill, max_pool_p6
from alignbench.models.sfnet.decoder import FlowAlignment


class FlowAlignedFPN(nn.Module):
    """FPN neck with SFNet's FAM in place of nearest-neighbour upsampling (module docstring).

    Args:
        in_channels: backbone widths, e.g. {"c2": 64, ..., "c5": 512}.
        out_channels: pyramid width (256).
        in_features: backbone maps, finest first.
        flow_kernel_size: k of FAM's flow conv (3, SFNet's).
        top_block: add "p6" = 1x1 stride-2 max-pool of P5 (detection), as FPN does.
    """

    def __init__(
        self,
        in_channels: Mapping[str, int],
        out_channels: int = 256,
        *,
        in_features: Sequence[str] = ("c2", "c3", "c4", "c5"),
        flow_kernel_size: int = 3,
        top_block: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = tuple(in_features)
        self.levels = tuple(f"p{name[1:]}" for name in self.in_features)
        self.out_channels = out_channels
        self.top_block = top_block
        self.lateral = nn.ModuleDict()
        self.output = nn.ModuleDict()
        self.align = nn.ModuleDict()
        for name, level in zip(self.in_features, self.levels):
            self.lateral[level] = nn.Conv2d(in_channels[name], out_channels, kernel_size=1)
            output = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
            c2_xavier_fill(self.lateral[level])
            c2_xavier_fill(output)
            self.output[level] = nn.Sequential(output)  # FPN's parameter names: FPN weights load into this neck
        for level in self.levels[:-1]:
            self.align[level] = FlowAlignment(out_channels, level=level, kernel_size=flow_kernel_size)
        self.strides: dict[str, int] = {level: 2 ** int(level[1:]) for level in self.levels}
        if top_block:
            top = int(self.levels[-1][1:]) + 1
            self.strides[f"p{top}"] = 2**top

    def forward(self, features: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        results: dict[str, torch.Tensor] = {}
        previous = None
        for name, level in zip(reversed(self.in_features), reversed(self.levels)):
            lateral = self.lateral[level](features[name])
            previous = lateral if previous is None else lateral + self.align[level](lateral, previous)
            results[level] = self.output[level](previous)
        if self.top_block:
            top = self.levels[-1]
            results[f"p{int(top[1:]) + 1}"] = max_pool_p6(results[top])
        return OrderedDict((level, results[level]) for level in self.strides)
