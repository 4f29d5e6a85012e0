"""Semantic segmentation heads.

Interface shared by every head: `forward(features) -> logits (B, K, h, w)` at the head's own output
resolution (the model resizes them to the input), and `losses(features, targets) -> {name: scalar}` with
`targets` (B, H, W) int64 train ids at the (padded) input resolution, `ignore_index` = 255.
(SFNet's fusion head and context modules are used by models/sfnet.py, which computes their losses.)
"""

from alignbench.models.heads.context import ASPP, DenseASPP, NonLocalContext, PyramidPooling, build_context
from alignbench.models.heads.pointrend import PointHead, PointRendSemanticHead
from alignbench.models.heads.prediction import ConvPredictionHead
from alignbench.models.heads.semantic_fpn import SemanticFPNHead
from alignbench.models.heads.sfnet import DeepSupervisionHead, SFNetFusionHead

__all__ = [
    "ASPP",
    "ConvPredictionHead",
    "DeepSupervisionHead",
    "DenseASPP",
    "NonLocalContext",
    "PointHead",
    "PointRendSemanticHead",
    "PyramidPooling",
    "SFNetFusionHead",
    "SemanticFPNHead",
    "build_context",
]
