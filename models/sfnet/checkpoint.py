"""The SFNet authors' checkpoints (SFSegNets) in our key names.

Key layout of the authors' models (SFSegNets network/sfnet_resnet.py `AlignNetResNet` and
network/sfnet_dfnet.py `AlignNetDFnet`, with `UperNetAlignHead`; network/nn/operators.py `PSPModule`,
`AlignedModule`):
- ResNets: "layer0" = Sequential(conv1 (the deep stem, a Sequential), bn1, relu, maxpool), then layer1..4
  with torchvision's block names; DFNet: "backbone.stage1".."backbone.stage5";
- head.ppm.* (the PPM), head.fpn_in.{i} (lateral 1x1 conv-BN-ReLU), head.fpn_out.{i}.0 (3x3 conv-BN-ReLU),
  head.fpn_out_align.{i} (FAM: down_h reduces the coarse map, down_l the fine map, flow_make predicts the
  flow), head.dsn.{i} (deep supervision, only in models trained with it), head.conv_last.0 (fusion
  conv-BN-ReLU) and head.conv_last.1 (classifier); index i counts the levels below the top, finest first.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from alignbench.models.checkpoints import rename


def from_sfsegnets(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Rename an SFSegNets state dict to `model`'s keys; deep-supervision tensors are dropped (and
    returned with the reason) when `model` has no deep-supervision heads."""
    if model.neck is None:
        raise ValueError("SFSegNets checkpoints hold the aligned-FPN SFNet; this model has no decoder (FCN head)")
    levels = model.neck.levels[:-1]  # the levels below the top, finest first: the authors' index i
    rules = [
        (r"layer0\.0\.(.+)", r"backbone.conv1.\1"),
        (r"layer0\.1\.(.+)", r"backbone.bn1.\1"),
        (r"(layer[1-4]\..+)", r"backbone.\1"),
        (r"(backbone\..+)", r"\1"),
        (r"head\.ppm\.(.+)", r"neck.context.\1"),
        (r"head\.conv_last\.0\.(.+)", r"head.fuse.\1"),
        (r"head\.conv_last\.1\.(.+)", r"head.classifier.\1"),
    ]
    for index, level in enumerate(levels):
        rules += [
            (rf"head\.fpn_in\.{index}\.(.+)", rf"neck.lateral.{level}.\1"),
            (rf"head\.fpn_out\.{index}\.0\.(.+)", rf"neck.output.{level}.\1"),
            (rf"head\.fpn_out_align\.{index}\.down_h\.(.+)", rf"neck.align.{level}.down_coarse.\1"),
            (rf"head\.fpn_out_align\.{index}\.down_l\.(.+)", rf"neck.align.{level}.down_fine.\1"),
            (rf"head\.fpn_out_align\.{index}\.flow_make\.(.+)", rf"neck.align.{level}.flow.\1"),
            (rf"head\.dsn\.{index}\.(.+)", rf"deep_supervision.{level}.layers.\1"),
        ]
    dropped = {}
    if model.deep_supervision is None:
        dropped = {key: "deep-supervision head (training only; the model was built without deep_supervision)"
                   for key in state if re.fullmatch(r"head\.dsn\.\d+\..+", key)}
    kept = {key: value for key, value in state.items() if key not in dropped}
    return rename(kept, rules), dropped
