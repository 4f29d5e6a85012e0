"""torchvision ResNet-18/34/50/101 as a feature extractor returning C2..C5 (strides 4, 8, 16, 32).

The module keeps torchvision's attribute names (conv1, bn1, layer1..layer4), so a torchvision-format
state dict loads as is (its classifier `fc.*` is dropped). Nothing is ever downloaded: `weights` is a
local file.

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

import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

logger = logging.getLogger(__name__)

_BUILDERS = {
    18: torchvision.models.resnet18,
    34: torchvision.models.resnet34,
    50: torchvision.models.resnet50,
    101: torchvision.models.resnet101,
}
RESNET_DEPTHS = tuple(_BUILDERS)

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
    """

    def __init__(
        self,
        depth: int = 50,
        *,
        frozen_bn: bool | None = None,
        freeze_stem: bool = False,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        if depth not in _BUILDERS:
            raise ValueError(f"depth: ResNet depth must be one of {RESNET_DEPTHS}, got {depth!r}")
        self.depth = depth
        if frozen_bn is None:
            frozen_bn = weights is not None
        self.frozen_bn = frozen_bn
        norm_layer = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        net = _BUILDERS[depth](weights=None, norm_layer=norm_layer)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        widths = (64, 128, 256, 512)
        expansion = 4 if depth >= 50 else 1
        self.out_channels: dict[str, int] = {name: width * expansion for name, width in zip(_NAMES, widths)}
        self.strides: dict[str, int] = {name: 2 ** (index + 2) for index, name in enumerate(_NAMES)}
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


def _short_list(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_resnet_weights(backbone: ResNetBackbone, path: str | Path) -> None:
    """Load a local torchvision-format ResNet state dict into `backbone`.

    The classifier (`fc.*`) is ignored and `num_batches_tracked` counters are optional either way.
    Anything else that does not fit raises BackboneWeightsError listing the missing keys, the unexpected
    keys and the shape mismatches.
    """
    path = Path(path)
    if not path.is_file():
        raise BackboneWeightsError(f"weights: no such file {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt / foreign files
        raise BackboneWeightsError(f"weights: cannot read {str(path)!r} as a PyTorch state dict ({error})") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise BackboneWeightsError(f"weights: {str(path)!r} is not a state dict of tensors")

    def relevant(key: str) -> bool:
        return not key.startswith("fc.") and not key.endswith("num_batches_tracked")

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
        raise BackboneWeightsError(
            f"weights: {str(path)!r} does not fit ResNet-{backbone.depth}: " + "; ".join(problems)
        )
    backbone.load_state_dict(given, strict=False)
    logger.info("loaded ResNet-%d weights from %s (%d tensors)", backbone.depth, path, len(given))
