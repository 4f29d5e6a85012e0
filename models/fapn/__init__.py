"""FaPN (Huang et al., ICCV 2021): the neck (`neck`), the real-time variant (`realtime`) and the registry
entries of FaPN's semantic segmentation tables (`zoo`). FaPN's COCO detection rows are in models/detection."""

from alignbench.models.fapn.neck import DeconvUpsample, FaPN, FeatureAlignment, FeatureSelection, PostFusionAlignment
from alignbench.models.fapn.realtime import RealTimeFaPN, build_realtime_segmenter

__all__ = [
    "DeconvUpsample",
    "FaPN",
    "FeatureAlignment",
    "FeatureSelection",
    "PostFusionAlignment",
    "RealTimeFaPN",
    "build_realtime_segmenter",
]
