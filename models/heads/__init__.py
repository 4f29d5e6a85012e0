"""Semantic segmentation heads shared by several families (SFNet's own heads are in models/sfnet).

Interface shared by every head: `forward(features) -> logits (B, K, h, w)` at the head's own output
resolution (the model resizes them to the input), and `losses(features, targets) -> {name: scalar}` with
`targets` (B, H, W) int64 train ids at the (padded) input resolution, `ignore_index` = 255.
"""

from alignbench.models.heads.pointrend import PointHead, PointRendSemanticHead
from alignbench.models.heads.prediction import ConvPredictionHead
from alignbench.models.heads.semantic_fpn import SemanticFPNHead

__all__ = [
    "ConvPredictionHead",
    "PointHead",
    "PointRendSemanticHead",
    "SemanticFPNHead",
]
