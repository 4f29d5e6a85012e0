"""UFP, the "Unscathed Feature Pyramid" that FPT's segmentation models build on (FPT section 3.5).

The paper's whole description: "a pyramidal global convolutional network [Peng et al. 2017, "Large Kernel
Matters"] with the internal kernel size of 1, 7, 15 and 31, and each scale with the output dimension of
256", applied to a dilated ResNet-101 (output stride 8), the levels sharing one resolution but differing
in "information granularity" (section 2).

GCN block (Peng et al.): two branches, (k x 1 conv then 1 x k conv) and (1 x k conv then k x 1 conv), summed;
convs with bias, no nonlinearity inside.

Interpretations:
- arrangement "cascade" (default): level 1 = GCN_1(C5), level 2 = GCN_7(level 1), level 3 = GCN_15(level 2),
  level 4 = GCN_31(level 3): a pyramid of growing receptive fields in which the k = 1 block is the
  2048 -> 256 reduction. "parallel": four GCN blocks side by side on C5 (like ASPP's branches), each
  2048 -> 256. Neither is stated; the cascade is the default because FPT Table 4's UFP figures (71.3M
  parameters, 916.1 GFLOPs) are far closer to it (60.0M with our head; about 900 GMACs at 969 x 969, the
  paper's crop) than to the parallel form (108.6M, about 1630 GMACs).
- BatchNorm + ReLU after each GCN block: the GCN paper has none inside a block, but a linear cascade would
  collapse to one linear map; the segmentation networks FPT follows ([5, 41]) normalise every block.
Levels are named "u<k>" ("u1", "u7", "u15", "u31"), finest granularity first, all at the stride of C5.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ARRANGEMENTS = ("cascade", "parallel")


class TallConv2d(nn.Conv2d):
    """A k x 1 conv computed as the equivalent 1 x k conv on the transposed map (same weights, same result).

    Why: on the CPU, PyTorch 2.14's oneDNN backward of k x 1 convs whose kernel is taller than the input
    (k = 31 on the 12 x 12 maps of small test images) corrupts memory (segfault / abort / hang), while
    1 x k kernels on the same sizes work. The parameters keep nn.Conv2d's (out, in, k, 1) layout.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, (kernel_size, 1), padding=(kernel_size // 2, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flipped = F.conv2d(
            x.transpose(-1, -2), self.weight.transpose(-1, -2), self.bias, padding=(0, self.padding[0])
        )
        return flipped.transpose(-1, -2)


class GlobalConvolution(nn.Module):
    """GCN block: (k x 1 -> 1 x k) + (1 x k -> k x 1), then BN + ReLU (module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.left = nn.Sequential(
            TallConv2d(in_channels, out_channels, kernel_size),
            nn.Conv2d(out_channels, out_channels, (1, kernel_size), padding=(0, pad)),
        )
        self.right = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, (1, kernel_size), padding=(0, pad)),
            TallConv2d(out_channels, out_channels, kernel_size),
        )
        self.norm = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.norm(self.left(x) + self.right(x)))


class UFP(nn.Module):
    """Unscathed feature pyramid on the coarsest backbone map: {"c5": ...} -> {"u1", "u7", "u15", "u31"}.

    Args:
        in_channels: backbone widths (only `in_feature`'s is used).
        out_channels: width of every level (256).
        kernel_sizes: the GCN kernel sizes, one level each (1, 7, 15, 31).
        arrangement: "cascade" or "parallel" (module docstring).
        in_feature: the backbone map to use ("c5").
        in_stride: its stride (8 for the dilated ResNet).
    """

    def __init__(
        self,
        in_channels: Mapping[str, int],
        out_channels: int = 256,
        *,
        kernel_sizes: Sequence[int] = (1, 7, 15, 31),
        arrangement: str = "cascade",
        in_feature: str = "c5",
        in_stride: int = 8,
    ) -> None:
        super().__init__()
        if arrangement not in ARRANGEMENTS:
            raise ValueError(f"arrangement: expected one of {ARRANGEMENTS}, got {arrangement!r}")
        self.arrangement = arrangement
        self.in_feature = in_feature
        self.out_channels = out_channels
        self.blocks = nn.ModuleDict()
        width = in_channels[in_feature]
        for kernel_size in kernel_sizes:
            self.blocks[f"u{kernel_size}"] = GlobalConvolution(width, out_channels, kernel_size)
            if arrangement == "cascade":
                width = out_channels
        self.strides: dict[str, int] = {level: in_stride for level in self.blocks}

    def forward(self, features: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        x = features[self.in_feature]
        outputs: OrderedDict[str, torch.Tensor] = OrderedDict()
        for level, block in self.blocks.items():
            outputs[level] = block(x)
            if self.arrangement == "cascade":
                x = outputs[level]
        return outputs
