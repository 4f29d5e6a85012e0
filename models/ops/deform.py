"""Modulated deformable convolution v2 (Zhu et al., DCNv2): torchvision's `deform_conv2d`, and an exact faster CPU path.

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

Two paths compute the same function. On the CPU, `deform_conv2d_by_sampling` (bilinear sampling with
`grid_sample`, then one batched matrix product) replaces torchvision's CPU kernel, whose scalar loops
take several times longer, forward and backward, at FaPN's shapes (docs/measure_deform_conv_cpu.py
measures both). torchvision's `deform_conv2d` stays the path on CUDA and under tracing (fvcore counts
`torchvision::deform_conv2d` as one operator). Under CPU autocast the layer computes in float32 and returns
the input's dtype, as torchvision's CUDA autocast rule for deform_conv2d does (torchvision/csrc/ops/autocast/
deform_conv2d_kernel.cpp); torchvision has no such rule for the CPU, where its kernel fails on bfloat16.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d


def _next_power_of_two(size: int) -> int:
    return 1 << (size - 1).bit_length()


def deform_conv2d_by_sampling(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """`torchvision.ops.deform_conv2d` (one weight group) as bilinear sampling plus a matrix product.

    Hand-written because torchvision's CPU kernel is the slow part of FaPN's CPU training and no library
    offers a faster exact CPU deformable convolution. What torchvision's CPU kernel computes
    (torchvision/csrc/ops/cpu/deform_conv2d_kernel.cpp): sample n = (i, j) of output pixel (h, w) in
    deformable group g reads the input at y = h * stride - pad + i * dilation + dy, x likewise, by
    bilinear interpolation in which corners outside the input count as zero; it is multiplied by the
    mask, and the k * k samples of every channel are contracted with the weight. Here `grid_sample`
    (bilinear, zero padding) does the sampling of each deformable group's channels and autograd gives
    the backward; `grid_sample`'s own boundary handling and one-sided derivatives at integer positions
    (floor) are the same as torchvision's.

    `grid_sample` takes normalised coordinates; the input is zero-padded on the bottom and right to
    power-of-two sizes so that the normalisation is exact in floating point: integer positions (every
    sample when the offsets are zero, as at initialisation) stay integers, and the derivatives there
    follow the same side as torchvision's.
    """
    batch, channels, height, width = input.shape
    out_channels, weight_channels, kernel_h, kernel_w = weight.shape
    if weight_channels != channels:
        raise ValueError(f"weight groups are not supported: weight has {weight_channels} input channels, input {channels}")
    taps = kernel_h * kernel_w
    groups = offset.shape[1] // (2 * taps)
    out_h = (height + 2 * padding[0] - dilation[0] * (kernel_h - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kernel_w - 1) - 1) // stride[1] + 1
    if offset.shape != (batch, 2 * groups * taps, out_h, out_w) or channels % groups:
        raise ValueError(f"offset of shape {tuple(offset.shape)} does not fit input {tuple(input.shape)}, kernel {kernel_h}x{kernel_w}")

    # Sampling positions in input pixels, (batch, group, tap, out_h, out_w), summed as torchvision does.
    kernel_rows = torch.arange(kernel_h, device=input.device).repeat_interleave(kernel_w) * dilation[0]
    kernel_cols = torch.arange(kernel_w, device=input.device).repeat(kernel_h) * dilation[1]
    rows = torch.arange(out_h, device=input.device) * stride[0] - padding[0]
    cols = torch.arange(out_w, device=input.device) * stride[1] - padding[1]
    base_y = (kernel_rows.view(taps, 1, 1) + rows.view(1, out_h, 1)).to(input.dtype)
    base_x = (kernel_cols.view(taps, 1, 1) + cols.view(1, 1, out_w)).to(input.dtype)
    shifts = offset.reshape(batch, groups, taps, 2, out_h, out_w)
    y = shifts[:, :, :, 0] + base_y
    x = shifts[:, :, :, 1] + base_x

    padded_h, padded_w = _next_power_of_two(height), _next_power_of_two(width)
    padded = F.pad(input, (0, padded_w - width, 0, padded_h - height))
    # Positions beyond [-1, size] read zeros either way; clamping keeps huge offsets finite inside grid_sample.
    y = y.clamp(-2.0, padded_h + 1.0)
    x = x.clamp(-2.0, padded_w + 1.0)
    # grid_sample (align_corners=False) reads pixel p at normalised coordinate (2p + 1) / size - 1.
    grid = torch.stack(((2 * x + 1) / padded_w - 1, (2 * y + 1) / padded_h - 1), dim=-1)
    samples = F.grid_sample(
        padded.reshape(batch * groups, channels // groups, padded_h, padded_w),
        grid.view(batch * groups, taps * out_h, out_w, 2),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    ).view(batch, groups, channels // groups, taps, out_h, out_w)
    if mask is not None:
        mask = mask.reshape(batch, groups, 1, taps, out_h, out_w)
        # Without gradients (inference) in place: the samples are the largest tensor here (k * k times the input).
        samples = samples * mask if samples.requires_grad or mask.requires_grad else samples.mul_(mask)
    # Columns (channel, tap) against the weight's (out, channel, kh, kw) layout; the weight is broadcast
    # over the batch by expand (no copy), which bmm reads directly.
    output = torch.bmm(
        weight.reshape(1, out_channels, channels * taps).expand(batch, -1, -1),
        samples.reshape(batch, channels * taps, out_h * out_w),
    ).view(batch, out_channels, out_h, out_w)
    if bias is not None:
        output = output + bias.view(1, out_channels, 1, 1)
    return output


class ModulatedDeformConv2d(nn.Module):
    """A k x k DCNv2 layer (DCNv1 with `modulated=False`) with its own zero-initialised offset / mask predictor.

    `forward(x, offset_input)` returns `(output, offset, mask)` so that callers can report the offsets
    and masks (see `models.capture`); `mask` is None when `modulated` is False.

    `sample_on_cpu` (class attribute, default True) picks `deform_conv2d_by_sampling` on the CPU outside
    tracing; False keeps torchvision's kernel everywhere (for measuring the two).
    """

    sample_on_cpu = True

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
        return self._convolve(x, offset, mask), offset, mask

    def _convolve(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The deformable convolution by the path the module docstring describes."""
        padding = (self.padding, self.padding)
        if not self.sample_on_cpu or x.device.type != "cpu" or torch.jit.is_tracing():
            return deform_conv2d(x, offset, self.weight, self.bias, padding=padding, mask=mask)
        if not torch.is_autocast_enabled("cpu"):
            return deform_conv2d_by_sampling(x, offset, self.weight, self.bias, padding=padding, mask=mask)
        with torch.autocast("cpu", enabled=False):
            output = deform_conv2d_by_sampling(
                x.float(),
                offset.float(),
                self.weight.float(),
                None if self.bias is None else self.bias.float(),
                padding=padding,
                mask=None if mask is None else mask.float(),
            )
        return output.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"deformable_groups={self.deformable_groups}, modulated={self.modulated}"
        )
