"""Bottom-up backbones returning C2..C5 feature maps (DFNet: C3..C5)."""

from alignbench.models.backbones.dfnet import DFNetBackbone
from alignbench.models.backbones.resnet import (
    RESNET_DEPTHS,
    BackboneWeightsError,
    ResNetBackbone,
    load_backbone_weights,
    load_resnet_weights,
)
from alignbench.models.backbones.shufflenet import ShuffleNetV2Backbone

__all__ = [
    "RESNET_DEPTHS",
    "BackboneWeightsError",
    "DFNetBackbone",
    "ResNetBackbone",
    "ShuffleNetV2Backbone",
    "load_backbone_weights",
    "load_resnet_weights",
]
