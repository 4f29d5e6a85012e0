"""FPT (Zhang et al., ECCV 2020): the transformers and the FPT detection neck (`transformer`), the UFP
segmentation pyramid (`ufp`), the UFP segmentation model (`model`) and the registry entries of FPT's
semantic Table 4 (`zoo`). FPT's Mask R-CNN rows (Tables 1-3) are in models/detection."""

from alignbench.models.fpt.model import ConcatSegmentationHead, UFPSegmenter, build_ufp_segmenter
from alignbench.models.fpt.transformer import (
    FPT,
    FeaturePyramidTransformer,
    GroundingTransformer,
    RenderingTransformer,
    SelfTransformer,
)
from alignbench.models.fpt.ufp import UFP

__all__ = [
    "FPT",
    "UFP",
    "ConcatSegmentationHead",
    "FeaturePyramidTransformer",
    "GroundingTransformer",
    "RenderingTransformer",
    "SelfTransformer",
    "UFPSegmenter",
    "build_ufp_segmenter",
]
