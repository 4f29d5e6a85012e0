"""Modulated deformable convolution v2 (Zhu et al., DCNv2) on top of `torchvision.ops.deform_conv2d`.

Facts from the FaPN authors' code (EMI-Group/FaPN, DCNv2/dcn_v2.py, class DCN with extra_offset_mask=True):
- the offsets and masks come from a separate conv (`conv_offset_mask`, same kernel size, with bias) applied
  to an *offset input* that may differ from the sampled input;
- that conv predicts 3 * G * k * k channels: the first 2 * G * k * k are the offsets, the last G * k * k go
  through a sigmoid to give the modulation masks;
- it is zero-initialised, so at initialisation the offsets are 0 and every mask is sigmoid(0) = 0.5;
- the main weight is uniform in +-1 / sqrt(in_channels * k * k) and the bias is zero.

With `modulated=False` the layer is the original DCN (v1, Dai et al. 2017; SFNet Table 2(d) compares FAM with
it): the offset conv predicts only the 2 * G * k * k offsets and no mask is applied.

Offset layout (torchvision's): channel 2 * (g * k * k + n) is the vertical (dy) and channel
2 * (g * k * k + n) + 1 the horizontal (dx) shift of sample n of deformable group g, in pixels.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import deform_conv2d


class ModulatedDeformConv2d(nn.Module):
    """A k x k DCNv2 layer (DCNv1 with `modulated=False`) with its own zero-initialised offset / mask predictor.

    `forward(x, offset_input)` returns `(output, offset, mask)` so that callers can report the offsets
    and masks (see `models.capture`); `mask` is None when `modulated` is False.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        deformable_groups: int = 8,
        offset_in_channels: int | None = None,
        bias: bool = True,
        modulated: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % deformable_groups:
            raise ValueError(
                f"in_channels ({in_channels}) must be divisible by deformable_groups ({deformable_groups})"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        self.deformable_groups = deformable_groups
        self.modulated = modulated
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        samples = deformable_groups * kernel_size * kernel_size
        predicted = (3 if modulated else 2) * samples
        self.conv_offset_mask = nn.Conv2d(
            offset_in_channels or in_channels, predicted, kernel_size, padding=self.padding, bias=True
        )
        self.reset_parameters()

    @property
    def num_offset_channels(self) -> int:
        return 2 * self.deformable_groups * self.kernel_size * self.kernel_size

    def reset_parameters(self) -> None:
        """DCNv2's initialisation: uniform main weight, zero bias, zero offset / mask conv."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size * self.kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(
        self, x: torch.Tensor, offset_input: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Sample `x` at positions shifted by offsets predicted from `offset_input` (same spatial size)."""
        predicted = self.conv_offset_mask(offset_input)
        # A NaN offset makes torchvision's kernels index outside the input (a segfault on the CPU, an
        # illegal memory access on CUDA) when training diverges; NaN -> 0 keeps the failure a NaN loss.
        offset = torch.nan_to_num(predicted[:, : self.num_offset_channels])
        mask = torch.sigmoid(predicted[:, self.num_offset_channels :]) if self.modulated else None
        output = deform_conv2d(
            x, offset, self.weight, self.bias, padding=(self.padding, self.padding), mask=mask
        )
        return output, offset, mask

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"deformable_groups={self.deformable_groups}, modulated={self.modulated}"
        )
