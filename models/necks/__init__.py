"""Feature-pyramid necks: `neck(features)` maps backbone features {"c2".."c5"} to {"p2".."p5"(, "p6")}.

Every neck takes `in_channels` (the backbone's `out_channels` dict), exposes `out_channels` (int) and
`strides` ({"p2": 4, ...}), and holds no head logic, so that detection heads can use it too.
(`AlignedFPN`, SFNet's decoder pyramid, and `UFP`, FPT's segmentation pyramid, are segmentation-only.)
"""

from alignbench.models.necks.fapn import FaPN, FeatureAlignment, FeatureSelection, PostFusionAlignment
from alignbench.models.necks.fapn_realtime import RealTimeFaPN
from alignbench.models.necks.fpn import FPN
from alignbench.models.necks.fpt import (
    FPT,
    FeaturePyramidTransformer,
    GroundingTransformer,
    RenderingTransformer,
    SelfTransformer,
)
from alignbench.models.necks.sfnet import AlignedFPN, DeformableAlignment, FlowAlignment
from alignbench.models.necks.ufp import UFP

__all__ = [
    "FPN",
    "FPT",
    "UFP",
    "AlignedFPN",
    "DeformableAlignment",
    "FaPN",
    "FeatureAlignment",
    "FeaturePyramidTransformer",
    "FeatureSelection",
    "FlowAlignment",
    "GroundingTransformer",
    "PostFusionAlignment",
    "RealTimeFaPN",
    "RenderingTransformer",
    "SelfTransformer",
]
