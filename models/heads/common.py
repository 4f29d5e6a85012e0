"""The segmentation loss shared by the heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsampled_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy of `logits` resized bilinearly (align_corners=False) to the targets' size.

    This is detectron2's SemSegFPNHead.losses (interpolate by the common stride, mean over non-ignored
    pixels). When every pixel is ignored the loss is 0 (connected to the graph) instead of NaN.
    """
    if logits.shape[-2:] != targets.shape[-2:]:
        logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
    if not bool((targets != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, targets, ignore_index=ignore_index)
