"""SFNet (Li et al., ECCV 2020): context modules (`context`), the flow-aligned decoder (`decoder`), the
fusion and deep-supervision heads (`head`), the model and its builder (`model`) and its registry entries
(`zoo`)."""

from alignbench.models.sfnet.context import ASPP, DenseASPP, NonLocalContext, PyramidPooling, build_context
from alignbench.models.sfnet.decoder import AlignedFPN, DeformableAlignment, FlowAlignment, upsample_aligned_corners
from alignbench.models.sfnet.head import DeepSupervisionHead, SFNetFusionHead
from alignbench.models.sfnet.model import SFNet, build_backbone, build_sfnet

__all__ = [
    "ASPP",
    "AlignedFPN",
    "DeepSupervisionHead",
    "DeformableAlignment",
    "DenseASPP",
    "FlowAlignment",
    "NonLocalContext",
    "PyramidPooling",
    "SFNet",
    "SFNetFusionHead",
    "build_backbone",
    "build_context",
    "build_sfnet",
    "upsample_aligned_corners",
]
