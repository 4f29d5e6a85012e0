"""torchvision ResNet-18/34/50/101 as a feature extractor returning C2..C5 (strides 4, 8, 16, 32).

The module keeps torchvision's attribute names (conv1, bn1, layer1..layer4), so a torchvision-format
state dict loads as is (its classifier `fc.*` is dropped). Nothing is ever downloaded: `weights` is a
local file.

Options used by other papers' backbones:
- `deep_stem=True`: the "deep stem" of the SFNet authors' ResNets (SFSegNets network/resnet_d.py): conv1 is
  three 3x3 convs 3->64 (stride 2), 64->64, 64->128, with BN + ReLU after the first two; bn1 normalises the
  128 channels; after the max-pool, layer1's first block takes 128 channels (with a 1x1 projection shortcut).
  Attribute names follow that code (conv1.0, conv1.1, conv1.3, conv1.4, conv1.6, bn1), so its deep-stem
  checkpoints load as torchvision-format ones do. New convs use its kaiming-normal (fan_out) init.
- `output_stride=8` (or 16): torchvision's replace_stride_with_dilation, the "dilated ResNet" of FPT's
  segmentation models (layer3 dilation 2, layer4 dilation 4; Bottleneck depths only).

BatchNorm: FaPN keeps "the weights of the batch normalization layers derived from the ImageNet
pre-trained models" frozen (FaPN supplementary section 1 / appendix A). By default (`frozen_bn=None`)
the backbone therefore uses FrozenBatchNorm2d when `weights` are loaded, and ordinary trainable
BatchNorm when it starts from random initialisation: frozen BN would then hold identity statistics, the
deep residual stack is un-normalised and training from scratch diverges (ResNet-50 reaches losses of
1e4 within two SGD steps). The stem is trainable by default, as in the PointRend semantic configs
(detectron2 Base-PointRend-Semantic-FPN.yaml and FaPN's Base-PointRend-Semantic-FAN.yaml:
BACKBONE.FREEZE_AT 0).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from alignbench.models.checkpoints import load_weights_file
from alignbench.models.detectron2 import caffe2_resnet_to_torchvision, detectron2_resnet_to_torchvision

logger = logging.getLogger(__name__)

_BUILDERS = {
    18: torchvision.models.resnet18,
    34: torchvision.models.resnet34,
    50: torchvision.models.resnet50,
    101: torchvision.models.resnet101,
}
RESNET_DEPTHS = tuple(_BUILDERS)
RESNET_STYLES = ("torchvision", "detectron2")

_STAGES = ("layer1", "layer2", "layer3", "layer4")
_NAMES = ("c2", "c3", "c4", "c5")


class BackboneWeightsError(ValueError):
    """A weights file that does not fit the backbone (missing / unexpected keys, wrong shapes, unreadable)."""


class ResNetBackbone(nn.Module):
    """ResNet bottom-up pathway: `forward(x)` returns OrderedDict c2..c5.

    Args:
        depth: 18, 34, 50 or 101.
        frozen_bn: use torchvision's FrozenBatchNorm2d (statistics and affine terms are buffers);
            None: frozen exactly when `weights` is given.
        freeze_stem: stop gradients into conv1 / bn1.
        weights: path of a local torchvision-format state dict to load (None: random initialisation).
        deep_stem: the SFNet deep stem (see the module docstring).
        output_stride: 32, 16 or 8; below 32 the last stages are dilated instead of strided.
        conv2_dilation: (d3, d4): dilation (and equal padding) of every block's `conv2` in layer3 / layer4,
            strides unchanged: (2, 4) is the SFNet authors' ResNet "variant D" (SFSegNets
            network/sfnet_resnet.py, `AlignNetResNet`); (1, 1) is torchvision's ResNet.
        style: "torchvision" (stride in a bottleneck's 3x3 conv) or "detectron2" (detectron2's MSRA ResNet:
            stride in the 1x1 conv, RESNETS.STRIDE_IN_1X1, and FrozenBatchNorm, RESNETS.NORM "FrozenBN";
            the weights expect BGR 0..255 input minus PIXEL_MEAN, see models.detectron2); None:
            "detectron2" for `.pkl` weights (detectron2's ImageNet files), else "torchvision".
    """

    def __init__(
        self,
        depth: int = 50,
        *,
        frozen_bn: bool | None = None,
        freeze_stem: bool = False,
        weights: str | Path | None = None,
        deep_stem: bool = False,
        output_stride: int = 32,
        conv2_dilation: tuple[int, int] = (1, 1),
        style: str | None = None,
    ) -> None:
        super().__init__()
        if depth not in _BUILDERS:
            raise ValueError(f"depth: ResNet depth must be one of {RESNET_DEPTHS}, got {depth!r}")
        dilate = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}
        if output_stride not in dilate:
            raise ValueError(f"output_stride: expected 32, 16 or 8, got {output_stride!r}")
        if output_stride != 32 and depth < 50:
            raise ValueError(f"output_stride {output_stride} needs a Bottleneck ResNet (depth 50 or 101), got {depth}")
        self.depth = depth
        self.deep_stem = deep_stem
        if style is None:
            style = "detectron2" if weights is not None and Path(weights).suffix == ".pkl" else "torchvision"
        if style not in RESNET_STYLES:
            raise ValueError(f"style: expected one of {RESNET_STYLES}, got {style!r}")
        self.style = style
        if frozen_bn is None:
            frozen_bn = weights is not None or style == "detectron2"
        self.frozen_bn = frozen_bn
        norm_layer = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        net = _BUILDERS[depth](weights=None, norm_layer=norm_layer, replace_stride_with_dilation=dilate[output_stride])
        if deep_stem:
            _make_deep_stem(net, norm_layer)
        if style == "detectron2" and depth >= 50:
            for layer in (net.layer2, net.layer3, net.layer4):
                layer[0].conv1.stride, layer[0].conv2.stride = layer[0].conv2.stride, (1, 1)
        self.conv2_dilation = tuple(conv2_dilation)
        for layer, dilation in zip((net.layer3, net.layer4), self.conv2_dilation):
            if dilation != 1:
                for block in layer:
                    # set after construction, as the authors' code does: torchvision's BasicBlock rejects dilation
                    block.conv2.dilation, block.conv2.padding = (dilation, dilation), (dilation, dilation)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        widths = (64, 128, 256, 512)
        expansion = 4 if depth >= 50 else 1
        self.out_channels: dict[str, int] = {name: width * expansion for name, width in zip(_NAMES, widths)}
        self.strides: dict[str, int] = {
            name: min(2 ** (index + 2), output_stride) for index, name in enumerate(_NAMES)
        }
        if weights is not None:
            load_resnet_weights(self, weights)
        if freeze_stem:
            for parameter in [*self.conv1.parameters(), *self.bn1.parameters()]:
                parameter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features: OrderedDict[str, torch.Tensor] = OrderedDict()
        for stage, name in zip(_STAGES, _NAMES):
            x = getattr(self, stage)(x)
            features[name] = x
        return features


def _make_deep_stem(net: torchvision.models.ResNet, norm_layer) -> None:
    """Replace a torchvision ResNet's 7x7 stem by the SFNet deep stem and widen layer1's input to 128."""

    def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
        return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)

    net.conv1 = nn.Sequential(
        conv3x3(3, 64, stride=2), norm_layer(64), nn.ReLU(inplace=True),
        conv3x3(64, 64), norm_layer(64), nn.ReLU(inplace=True),
        conv3x3(64, 128),
    )
    net.bn1 = norm_layer(128)
    first = net.layer1[0]
    block = type(first)
    out_channels = 64 * block.expansion
    shortcut = nn.Sequential(nn.Conv2d(128, out_channels, kernel_size=1, bias=False), norm_layer(out_channels))
    net.layer1[0] = block(128, 64, downsample=shortcut, norm_layer=norm_layer)
    for module in [*net.conv1.modules(), *net.layer1[0].modules()]:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def _short_list(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_resnet_weights(backbone: ResNetBackbone, path: str | Path) -> None:
    """Load a local torchvision-format ResNet state dict into `backbone`.

    The classifier (`fc.*`) is ignored and `num_batches_tracked` counters are optional either way.
    Anything else that does not fit raises BackboneWeightsError listing the missing keys, the unexpected
    keys and the shape mismatches.
    """
    load_backbone_weights(backbone, path, f"ResNet-{backbone.depth}")


def read_backbone_state(path: str | Path) -> dict[str, torch.Tensor]:
    """An ImageNet backbone checkpoint as a state dict in torchvision's names.

    Formats: torchvision and timm ResNets (torchvision's names; `{"state_dict": ...}` and "module." prefixes
    accepted), the SFNet authors' deep-stem ResNets (SFSegNets network/resnet_d.py names, which ours follow),
    detectron2 `.pkl` files: the MSRA ImageNet pickles in Caffe2 names and model-zoo pickles in detectron2
    names (converted by models.detectron2; the classifier is dropped).
    """
    path = Path(path)
    if not path.is_file():
        raise BackboneWeightsError(f"weights: no such file {str(path)!r}")
    try:
        state = load_weights_file(path)
    except Exception as error:  # torch / pickle raise many types for corrupt / foreign files
        raise BackboneWeightsError(f"weights: cannot read {str(path)!r} as a checkpoint ({error})") from None
    for wrapper in ("model", "blobs", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping):
        raise BackboneWeightsError(f"weights: {str(path)!r} is not a state dict of tensors")
    state = {
        key: torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
        for key, value in state.items()
        if not str(key).endswith("_momentum")  # Caffe2 optimizer state in Detectron1 pickles
    }
    if not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise BackboneWeightsError(f"weights: {str(path)!r} is not a state dict of tensors")
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    if "conv1_w" in state:
        state, _ = caffe2_resnet_to_torchvision(state)  # only the classifier is dropped
    elif any(key.startswith(("stem.", "backbone.bottom_up.stem.")) for key in state):
        state = detectron2_resnet_to_torchvision(state)
    return state


def load_backbone_weights(
    backbone: nn.Module, path: str | Path, description: str, ignored_prefixes: tuple[str, ...] = ("fc.",)
) -> None:
    """Load a local state dict into any backbone whose attribute names follow the file's (see
    `load_resnet_weights`; `description` names the architecture in errors, e.g. "ShuffleNetV2 x1.0")."""
    state = read_backbone_state(path)

    def relevant(key: str) -> bool:
        return not key.startswith(ignored_prefixes) and not key.endswith("num_batches_tracked")

    given = {key: value for key, value in state.items() if relevant(key)}
    expected = {key: value for key, value in backbone.state_dict().items() if relevant(key)}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = sorted(
        f"{key} {tuple(given[key].shape)} vs {tuple(expected[key].shape)}"
        for key in set(given) & set(expected)
        if given[key].shape != expected[key].shape
    )
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing keys: {_short_list(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_short_list(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches (file vs model): {_short_list(mismatched)}")
        raise BackboneWeightsError(f"weights: {str(path)!r} does not fit {description}: " + "; ".join(problems))
    backbone.load_state_dict(given, strict=False)
    logger.info("loaded %s weights from %s (%d tensors)", description, path, len(given))
