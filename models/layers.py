"""Small building blocks shared by necks and heads: weight initialisers and the P6 top block.

The initialisers reproduce the two detectron2 helpers the official FPN / FaPN / PointRend code uses
(fvcore `c2_xavier_fill` and `c2_msra_fill`), so that our layers start from the same distributions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2 "XavierFill": kaiming-uniform with a=1 on the weight, zero bias (FPN / FaPN neck convs)."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def c2_msra_fill(module: nn.Module) -> None:
    """Caffe2 "MSRAFill": kaiming-normal (fan_out, relu) on the weight, zero bias (semantic / point heads)."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def resize_to(x: torch.Tensor, size: tuple[int, int] | torch.Size, mode: str) -> torch.Tensor:
    """Resize a feature map to `size` with `mode` ("nearest" or "bilinear", align_corners=False).

    Returns `x` itself when it already has that size (bilinear with equal sizes is the identity anyway).
    """
    size = tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def max_pool_p6(p5: torch.Tensor) -> torch.Tensor:
    """P6 for detection: stride-2 subsampling of P5 by a 1x1 max-pool, as FPN (and detectron2's
    LastLevelMaxPool / torchvision's LastLevelMaxPool) define it."""
    return F.max_pool2d(p5, kernel_size=1, stride=2, padding=0)
