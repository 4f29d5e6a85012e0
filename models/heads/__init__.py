"""Semantic segmentation heads.

Interface shared by every head: `forward(features) -> logits (B, K, h, w)` at the head's own output
resolution (the model resizes them to the input), and `losses(features, targets) -> {name: scalar}` with
`targets` (B, H, W) int64 train ids at the (padded) input resolution, `ignore_index` = 255.
"""

from models.heads.pointrend import PointHead, PointRendSemanticHead
from models.heads.prediction import ConvPredictionHead
from models.heads.semantic_fpn import SemanticFPNHead

__all__ = ["ConvPredictionHead", "PointHead", "PointRendSemanticHead", "SemanticFPNHead"]
