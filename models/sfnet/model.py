"""SFNet segmentation models (Li et al., "Semantic Flow for Fast and Accurate Scene Parsing", ECCV 2020).

backbone -> `AlignedFPN` (context module + top-down path with FAM) -> `SFNetFusionHead` (all levels at 1/4,
concatenated, 3x3 conv-BN-ReLU, 1x1 classifier), plus optional training-only deep-supervision heads. See
models/sfnet/decoder.py and models/sfnet/head.py for the layer facts and their sources.

Facts from the authors' code (SFSegNets network/sfnet_resnet.py, loss.py):
- ResNet-18 uses the deep stem and fpn_dim 128 (lateral inputs 64, 128, 256, 512); ResNet-50/101 the deep
  stem and fpn_dim 256. Every BatchNorm is trained (SyncBN), so parameter counts include the backbone's BN
  affine terms: SFNet-R18 with 19 classes and no deep-supervision heads has 12,869,715 parameters
  (SFNet Tables 3 and 4: 12.87M).
- the logits (stride 4) are upsampled to the input with align_corners=True, for inference and for the loss;
- loss: OHEM cross-entropy (threshold 0.7, min_kept 100000, models.heads.common.ohem_cross_entropy) on
  the main output and, with deep supervision, on each auxiliary output with weight 1.

- ResNet "variant D" (SFSegNets network/sfnet_resnet.py, `AlignNetResNet` with variant='D', the
  variant of every released SFNet-ResNet model): every `conv2` of layer3 gets dilation 2 / padding 2 and
  every `conv2` of layer4 dilation 4 / padding 4, while the strides stay (the output stride is still 32).
  This is our default (`dilation="code"`); the paper's text describes stride-32 backbones without atrous
  convolutions ("discarding atrous convolutions", section 5): `dilation="paper"` builds that variant. Both
  have the same parameters, so a released checkpoint loads into either: only "code" computes what the
  authors' model computes.
- no input padding: `AlignNetResNet.forward` (and `AlignNetDFnet.forward`, network/sfnet_dfnet.py) runs the
  image as it is; every resize in the model is to the size of the map it is merged with (FAM's flow warp,
  the PPM's upsampling, the fusion), so any input size works, and SFNet sets `size_divisibility = 1`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from alignbench.models.backbones.dfnet import DFNetBackbone
from alignbench.models.backbones.resnet import ResNetBackbone
from alignbench.models.backbones.shufflenet import ShuffleNetV2Backbone
from alignbench.models.heads.common import ohem_cross_entropy
from alignbench.models.heads.prediction import ConvPredictionHead
from alignbench.models.segmentation import SegmentationModel
from alignbench.models.sfnet.checkpoint import from_sfsegnets
from alignbench.models.sfnet.decoder import AlignedFPN, upsample_aligned_corners
from alignbench.models.sfnet.head import DeepSupervisionHead, SFNetFusionHead

logger = logging.getLogger(__name__)

# backbone name -> default fpn_dim (the authors' code: 128 for ResNet-18, 256 for ResNet-50/101, 64 for DFNet;
# 64 for ShuffleNetV2 is our reading of SFNet Table 1(d), see models/sfnet/zoo.py)
FPN_DIMS = {"resnet18": 128, "resnet50": 256, "resnet101": 256, "shufflenetv2": 64, "df1": 64, "df2": 64}
HEADS = ("fusion", "fcn")
DILATIONS = {"code": (2, 4), "paper": (1, 1)}  # conv2 dilation of layer3 / layer4 (module docstring)


class SFNet(SegmentationModel):
    """backbone + (optional) aligned FPN + head, with SFNet's loss and optional deep supervision.

    `neck=None` gives the FCN baseline of SFNet Table 1(a) (the head reads the backbone maps directly).
    Inputs are not padded (module docstring).
    """

    size_divisibility = 1
    checkpoint_converters = {"sfsegnets": from_sfsegnets}

    def __init__(
        self,
        backbone: nn.Module,
        neck: AlignedFPN | None,
        head: nn.Module,
        num_classes: int,
        *,
        deep_supervision: nn.ModuleDict | None = None,
        ohem: bool = True,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(num_classes, ignore_index=ignore_index)
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.deep_supervision = deep_supervision
        self.ohem = ohem

    def _features(self, x: torch.Tensor) -> tuple[OrderedDict[str, torch.Tensor], dict[str, torch.Tensor]]:
        features = self.backbone(x)
        if self.neck is None:
            return features, {}
        return self.neck.forward_with_inner(features)

    def predict_padded(self, x: torch.Tensor) -> torch.Tensor:
        pyramid, _ = self._features(x)
        return upsample_aligned_corners(self.head(pyramid), x.shape[-2:])

    def _criterion(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = upsample_aligned_corners(logits, targets.shape[-2:])
        if self.ohem:
            return ohem_cross_entropy(logits, targets, self.ignore_index)
        return ohem_cross_entropy(logits, targets, self.ignore_index, min_kept=0)

    def losses_padded(self, x: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        pyramid, inner = self._features(x)
        losses = {"loss_sem_seg": self._criterion(self.head(pyramid), targets)}
        if self.deep_supervision is not None:
            for level, head in self.deep_supervision.items():
                losses[f"loss_dsn_{level}"] = self._criterion(head(inner[level]), targets)
        return losses


def build_backbone(name: str, weights: str | Path | None = None, dilation: str = "code") -> nn.Module:
    """SFNet's backbones by name: "resnet18" / "resnet50" / "resnet101" (deep stem), "shufflenetv2", "df1", "df2".

    BatchNorm is always trainable (the authors train every BN layer), also with `weights`. `dilation`
    ("code" or "paper", module docstring) applies to the ResNets only.
    """
    if dilation not in DILATIONS:
        raise ValueError(f"dilation: expected one of {tuple(DILATIONS)}, got {dilation!r}")
    if name.startswith("resnet"):
        return ResNetBackbone(
            int(name[len("resnet"):]), frozen_bn=False, weights=weights, deep_stem=True, conv2_dilation=DILATIONS[dilation]
        )
    if name == "shufflenetv2":
        return ShuffleNetV2Backbone("x1_0", weights=weights)
    if name in ("df1", "df2"):
        return DFNetBackbone(int(name[-1]), weights=weights)
    raise ValueError(f"backbone: expected one of {tuple(FPN_DIMS)}, got {name!r}")


def build_sfnet(
    num_classes: int,
    *,
    backbone: str = "resnet18",
    head: str = "fusion",
    context: str = "ppm",
    align: str = "fam",
    align_levels: tuple[str, ...] | None = None,
    flow_kernel_size: int = 3,
    fusion: str = "bilinear",
    neck_channels: int | None = None,
    head_channels: int | None = None,
    deep_supervision: bool = False,
    ohem: bool = True,
    dilation: str = "code",
    backbone_weights: str | Path | None = None,
) -> SFNet:
    """An SFNet-family model (see `AlignedFPN` and `SFNetFusionHead` for the options).

    Args:
        backbone: see `build_backbone`.
        head: "fusion" (SFNet) or "fcn" (SFNet Table 1(a) FCN: no decoder, 3x3 conv-BN-ReLU + 1x1 on C5).
        neck_channels: fpn_dim (default per backbone, `FPN_DIMS`).
        head_channels: width of the fusion conv (default fpn_dim, as in the code) or of the FCN head (128).
        deep_supervision: add the training-only auxiliary heads (not counted by the papers' parameters).
        ohem: OHEM cross-entropy as the authors train; False for the plain mean.
        dilation: "code" (the released ResNet-D: layer3 / layer4 conv2 dilation 2 / 4) or "paper" (none).
        backbone_weights: local ImageNet checkpoint of the backbone (see models.backbones.weights).
    """
    if head not in HEADS:
        raise ValueError(f"head: expected one of {HEADS}, got {head!r}")
    body = build_backbone(backbone, backbone_weights, dilation)
    channels = neck_channels or FPN_DIMS[backbone]
    in_features = tuple(body.out_channels)
    if head == "fcn":
        top = in_features[-1]
        fcn = ConvPredictionHead(body.out_channels[top], num_classes, channels=head_channels or 128, in_feature=top)
        return SFNet(body, None, fcn, num_classes, ohem=ohem)
    neck = AlignedFPN(
        body.out_channels,
        channels,
        in_features=in_features,
        context=context,
        align=align,
        align_levels=align_levels,
        flow_kernel_size=flow_kernel_size,
        in_strides=body.strides,
    )
    fusion_head = SFNetFusionHead(
        channels,
        neck.levels,
        num_classes,
        fusion=fusion,
        flow_kernel_size=flow_kernel_size,
        hidden_channels=head_channels,
    )
    dsn = None
    if deep_supervision:
        dsn = nn.ModuleDict({level: DeepSupervisionHead(channels, num_classes) for level in neck.levels[:-1]})
    return SFNet(body, neck, fusion_head, num_classes, deep_supervision=dsn, ohem=ohem)
