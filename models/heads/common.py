"""The segmentation loss shared by the heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsampled_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = 255, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy of `logits` resized bilinearly (align_corners=False) to the targets' size.

    This is detectron2's SemSegFPNHead.losses (interpolate by the common stride, mean over non-ignored
    pixels). `weight`: one weight per class (torch's `cross_entropy` weight: the mean is then weighted too).
    When every pixel is ignored the loss is 0 (connected to the graph) instead of NaN.
    """
    if logits.shape[-2:] != targets.shape[-2:]:
        logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
    if not bool((targets != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, targets, weight=None if weight is None else weight.to(logits.dtype), ignore_index=ignore_index)


def ohem_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = 255,
    threshold: float = 0.7,
    min_kept: int = 100_000,
) -> torch.Tensor:
    """Online hard example mining cross-entropy, as the SFNet authors' code computes it.

    Facts from SFSegNets loss.py (`OhemCrossEntropy2dTensor`, used by `CriterionSFNet` with threshold 0.7
    and min_kept 100000): over the whole batch, each valid pixel's probability of its true class is taken;
    when there are at least `min_kept` valid pixels, only pixels with probability <= t are kept, where t is
    `threshold`, raised to the `min_kept`-th smallest probability when that is larger; the loss is the mean
    cross-entropy over the kept pixels. With fewer valid pixels than `min_kept` it is the plain mean.
    `logits` must already have the targets' size. All pixels ignored: 0, connected to the graph.
    """
    valid = targets != ignore_index
    num_valid = int(valid.sum())
    if num_valid == 0:
        return logits.sum() * 0.0
    if num_valid >= min_kept > 0:
        with torch.no_grad():
            probability = torch.softmax(logits.float(), dim=1)
            true_class = targets.masked_fill(~valid, 0).unsqueeze(1)
            true_probability = probability.gather(1, true_class).squeeze(1).masked_fill(~valid, 1.0)
            kth = torch.kthvalue(true_probability.flatten(), min_kept).values
            cut = torch.maximum(kth, torch.tensor(threshold, device=kth.device))
            targets = targets.masked_fill(true_probability > cut, ignore_index)
    return F.cross_entropy(logits, targets, ignore_index=ignore_index)
