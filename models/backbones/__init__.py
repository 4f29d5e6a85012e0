"""Bottom-up backbones returning C2..C5 feature maps."""

from models.backbones.resnet import RESNET_DEPTHS, BackboneWeightsError, ResNetBackbone, load_resnet_weights

__all__ = ["RESNET_DEPTHS", "BackboneWeightsError", "ResNetBackbone", "load_resnet_weights"]
