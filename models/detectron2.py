"""detectron2's key layouts (FaPN's released checkpoints and detectron2's ImageNet files) in our key names.

Facts from detectron2 (modeling/backbone/resnet.py, fpn.py, meta_arch/semantic_seg.py, config/defaults.py;
projects/PointRend point_rend/semantic_seg.py, point_head.py; checkpoint/c2_model_loading.py) and from
the FaPN authors' detectron2/modeling/backbone/fan.py:
- ResNet: "stem.conv1" (+ ".norm"), "res{2..5}.{i}.conv{1,2,3}" (+ ".norm"), ".shortcut" (+ ".norm");
  defaults RESNETS.NORM "FrozenBN" and RESNETS.STRIDE_IN_1X1 True (the MSRA ImageNet models put a
  bottleneck's stride in its 1x1 conv); input BGR in 0..255 minus PIXEL_MEAN (103.530, 116.280, 123.675)
  with PIXEL_STD (1, 1, 1), INPUT.FORMAT "BGR" (the FaPN configs keep these defaults);
- Caffe2 / Detectron1 names of the MSRA ImageNet pickles (ImageNetPretrained/MSRA/R-50.pkl): "conv1_w",
  "res_conv1_bn_{s,b}", "res{s}_{i}_branch2{a,b,c}_w" (+ "_bn_{s,b}"), "res{s}_{i}_branch1_w" (+ "_bn_{s,b}"),
  "fc1000_{w,b}"; BatchNorm there is an affine scale / bias only, which detectron2's FrozenBatchNorm2d
  loads with running mean 0 and variance 1 (its `_load_from_state_dict`);
- FPN: "backbone.fpn_lateral{s}", "backbone.fpn_output{s}"; FaPN: "backbone.fan_align{s}.lateral_conv.
  conv_atten" (FSM attention), ".lateral_conv.conv" (FSM reduction), ".offset", ".dcpack_L2" (the DCN, with
  "conv_offset_mask"), the top level's plain lateral "backbone.fan_align5", outputs "backbone.fpn_output{s}";
- semantic heads: SemSegFPNHead "{p}.{j}" (a detectron2 Conv2d holding its GroupNorm as ".norm", followed by
  an Upsample on levels coarser than the common stride) and "predictor"; PointRend's SemSeg head nests it as
  "sem_seg_head.coarse_sem_seg_head" and adds "sem_seg_head.point_head.fc{1..3}" and ".predictor".
"""

from __future__ import annotations

import re

import torch
from torch import nn

from alignbench.models.checkpoints import rename

PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)  # detectron2 config/defaults.py MODEL.PIXEL_MEAN
PIXEL_STD = (1.0, 1.0, 1.0)  # MODEL.PIXEL_STD for the MSRA models

_CAFFE2_RESNET = [
    (r"conv1_w", "conv1.weight"),
    (r"res_conv1_bn_s", "bn1.weight"),
    (r"res_conv1_bn_b", "bn1.bias"),
]
_BRANCH = {"2a": "1", "2b": "2", "2c": "3"}
_PARAM = {"w": "weight", "s": "weight", "b": "bias"}


def caffe2_resnet_to_torchvision(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """MSRA ImageNet pickle names -> torchvision ResNet names; the classifier is dropped (reported) and the
    BatchNorm statistics are filled with detectron2's convention (mean 0, variance 1)."""
    renamed: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    for key, value in state.items():
        if key.startswith("fc1000_"):
            dropped[key] = "ImageNet classifier"
            continue
        match = re.fullmatch(r"res(\d)_(\d+)_branch(1|2a|2b|2c)(_bn)?_([wsb])", key)
        simple = dict(_CAFFE2_RESNET).get(key)
        if simple is not None:
            renamed[simple] = value
        elif match:
            stage, index, branch, bn, param = match.groups()
            block = f"layer{int(stage) - 1}.{index}"
            if branch == "1":
                module = f"{block}.downsample.{1 if bn else 0}"
            else:
                module = f"{block}.{'bn' if bn else 'conv'}{_BRANCH[branch]}"
            renamed[f"{module}.{_PARAM[param]}"] = value
        else:
            renamed[key] = value  # left for the strict loader to report as unexpected
    for key in [k for k in renamed if k.endswith(".weight") and (k.startswith("bn1") or re.search(r"\.bn\d\.|downsample\.1\.", k))]:
        module = key[: -len(".weight")]
        renamed.setdefault(f"{module}.running_mean", torch.zeros_like(renamed[key]))
        renamed.setdefault(f"{module}.running_var", torch.ones_like(renamed[key]))
    return renamed, dropped


def _resnet_stage(match: re.Match) -> str:
    return f"layer{int(match.group(1)) - 1}.{match.group(2)}."


def detectron2_resnet_rules(prefix: str, target: str) -> list[tuple[str, object]]:
    """Rules renaming detectron2 ResNet keys under `prefix` to torchvision names under `target`."""
    p, t = re.escape(prefix), target
    return [
        (rf"{p}stem\.conv1\.weight", f"{t}conv1.weight"),
        (rf"{p}stem\.conv1\.norm\.(.+)", rf"{t}bn1.\1"),
        (rf"{p}res(\d)\.(\d+)\.conv(\d)\.weight", lambda m: f"{t}{_resnet_stage(m)}conv{m.group(3)}.weight"),
        (rf"{p}res(\d)\.(\d+)\.conv(\d)\.norm\.(.+)", lambda m: f"{t}{_resnet_stage(m)}bn{m.group(3)}.{m.group(4)}"),
        (rf"{p}res(\d)\.(\d+)\.shortcut\.weight", lambda m: f"{t}{_resnet_stage(m)}downsample.0.weight"),
        (rf"{p}res(\d)\.(\d+)\.shortcut\.norm\.(.+)", lambda m: f"{t}{_resnet_stage(m)}downsample.1.{m.group(3)}"),
    ]


def detectron2_resnet_to_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """detectron2 ResNet names (optionally under "backbone.bottom_up.") -> torchvision names."""
    prefix = "backbone.bottom_up." if any(k.startswith("backbone.bottom_up.") for k in state) else ""
    return rename(state, detectron2_resnet_rules(prefix, ""))


def _semseg_fpn_rules(source: str, target: str, head: nn.Module) -> list[tuple[str, object]]:
    """SemSegFPNHead keys under `source` -> our SemanticFPNHead (`head`) keys under `target`."""
    rules: list[tuple[str, object]] = [(rf"{re.escape(source)}predictor\.(.+)", rf"{target}predictor.\1")]
    for level, layers in head.scale_heads.items():
        ours = [index for index, layer in enumerate(layers) if isinstance(layer, nn.Conv2d)]
        upsampled = any(isinstance(layer, nn.Upsample) for layer in layers)
        for block, index in enumerate(ours):
            theirs = 2 * block if upsampled else block
            rules += [
                (rf"{re.escape(source)}{level}\.{theirs}\.weight", f"{target}scale_heads.{level}.{index}.weight"),
                (rf"{re.escape(source)}{level}\.{theirs}\.norm\.(.+)", rf"{target}scale_heads.{level}.{index + 1}.\1"),
            ]
    return rules


def detectron2_neck_rules(neck: nn.Module, target: str = "neck.") -> list[tuple[str, object]]:
    """FPN / FaPN keys of a detectron2 checkpoint -> keys of `neck` under `target`."""
    ours = neck.state_dict()
    output = f"{target}output.p{{}}.0." if any(re.fullmatch(r"output\.p\d\.0\.weight", k) for k in ours) else f"{target}output.p{{}}."
    t = target
    return [
        (r"backbone\.fpn_lateral(\d)\.(.+)", rf"{t}lateral.p\1.\2"),
        (r"backbone\.fpn_output(\d)\.(.+)", lambda m: output.format(m.group(1)) + m.group(2)),
        (r"backbone\.fan_align\d\.(weight|bias)", rf"{t}top_lateral.\1"),
        (r"backbone\.fan_align(\d)\.lateral_conv\.conv_atten\.(.+)", rf"{t}lateral.p\1.attention.\2"),
        (r"backbone\.fan_align(\d)\.lateral_conv\.conv\.(.+)", rf"{t}lateral.p\1.reduce.\2"),
        (r"backbone\.fan_align(\d)\.offset\.(.+)", rf"{t}align.p\1.offset.\2"),
        (r"backbone\.fan_align(\d)\.dcpack_L2\.(.+)", rf"{t}align.p\1.dcn.\2"),
    ]


def _input_normalisation_keys(state: dict[str, torch.Tensor]) -> dict[str, str]:
    return {key: "detectron2's input normalisation (the model applies PIXEL_MEAN / PIXEL_STD itself)"
            for key in state if key in ("pixel_mean", "pixel_std")}


def from_detectron2_semantic(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A detectron2 SemanticSegmentor checkpoint (FPN / FaPN neck; PointRend or Semantic-FPN head) ->
    our PyramidSegmenter keys."""
    if getattr(model.backbone, "style", "torchvision") != "detectron2":
        raise ValueError("detectron2 checkpoints need the detectron2-style ResNet (build with backbone_style='detectron2')")
    dropped = _input_normalisation_keys(state)
    kept = {key: value for key, value in state.items() if key not in dropped}
    rules = detectron2_resnet_rules("backbone.bottom_up.", "backbone.") + detectron2_neck_rules(model.neck)
    head = model.head
    if hasattr(head, "point_head"):
        rules += _semseg_fpn_rules("sem_seg_head.coarse_sem_seg_head.", "head.coarse_head.", head.coarse_head)
        rules += [
            (r"sem_seg_head\.point_head\.fc(\d)\.(.+)", lambda m: f"head.point_head.fc_layers.{int(m.group(1)) - 1}.{m.group(2)}"),
            (r"sem_seg_head\.point_head\.predictor\.(.+)", r"head.point_head.predictor.\1"),
        ]
    else:
        rules += _semseg_fpn_rules("sem_seg_head.", "head.", head)
    return rename(kept, rules), dropped


def _background_first(value: torch.Tensor) -> torch.Tensor:
    """detectron2's class scores (K foreground rows, then the background) -> torchvision's (background first)."""
    return torch.cat([value[-1:], value[:-1]])


def _with_background_slot(value: torch.Tensor, rows_per_class: int) -> torch.Tensor:
    """detectron2's class-specific rows (no background) -> torchvision's, whose class 0 is the background:
    a zero slot is put first. torchvision never reads it (inference drops class 0; the losses index rows by
    the foreground labels), so its value does not enter any output."""
    return torch.cat([value.new_zeros((rows_per_class, *value.shape[1:])), value])


def detection_value_changes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Class order of detectron2's predictors -> torchvision's (keys already renamed to ours):
    cls_score rows (background last -> first), bbox_pred (4 rows per class) and mask_fcn_logits (1 row per
    class) get torchvision's background slot (detectron2 FastRCNNOutputLayers / MaskRCNNConvUpsampleHead)."""
    changed = dict(state)
    for key, value in state.items():
        if ".box_predictor.cls_score." in key:
            changed[key] = _background_first(value)
        elif ".box_predictor.bbox_pred." in key:
            changed[key] = _with_background_slot(value, 4)
        elif ".mask_predictor.mask_fcn_logits." in key:
            changed[key] = _with_background_slot(value, 1)
    return changed


def from_detectron2_detection(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A detectron2 GeneralizedRCNN / PanopticFPN checkpoint -> our RCNNDetector / PanopticFPN keys.

    Key layout (detectron2 modeling/meta_arch/rcnn.py, panoptic_fpn.py; proposal_generator/rpn.py
    StandardRPNHead; roi_heads/box_head.py FastRCNNConvFCHead; roi_heads/fast_rcnn.py FastRCNNOutputLayers;
    roi_heads/mask_head.py MaskRCNNConvUpsampleHead): "proposal_generator.rpn_head.{conv, objectness_logits,
    anchor_deltas}", "roi_heads.box_head.fc{1,2}", "roi_heads.box_predictor.{cls_score, bbox_pred}",
    "roi_heads.mask_head.{mask_fcn1..4, deconv, predictor}", "sem_seg_head.*" (Panoptic FPN's SemSegFPNHead).
    The RPN's output channels follow the cell-anchor order, size-major in detectron2 and aspect-ratio-major
    in torchvision: with one anchor size per level (every alignbench detector) the two orders coincide, so
    no channel is permuted; other anchor layouts are refused.
    """
    if getattr(model.backbone, "style", "torchvision") != "detectron2":
        raise ValueError("detectron2 checkpoints need the detectron2-style ResNet (build with backbone_style='detectron2')")
    if any(len(sizes) != 1 for sizes in model.rcnn.rpn.anchor_generator.sizes):
        raise ValueError("detectron2 checkpoints: the RPN channel order is mapped for one anchor size per level only")
    dropped = _input_normalisation_keys(state)
    dropped.update({key: "detectron2's anchor buffers (recomputed by the anchor generator)"
                    for key in state if key.startswith("proposal_generator.anchor_generator.")})
    kept = {key: value for key, value in state.items() if key not in dropped}
    rules = detectron2_resnet_rules("backbone.bottom_up.", "rcnn.backbone.body.")
    rules += detectron2_neck_rules(model.neck, "rcnn.backbone.neck.")
    rules += [
        (r"proposal_generator\.rpn_head\.conv\.(.+)", r"rcnn.rpn.head.conv.0.0.\1"),
        (r"proposal_generator\.rpn_head\.objectness_logits\.(.+)", r"rcnn.rpn.head.cls_logits.\1"),
        (r"proposal_generator\.rpn_head\.anchor_deltas\.(.+)", r"rcnn.rpn.head.bbox_pred.\1"),
        (r"roi_heads\.box_head\.fc1\.(.+)", r"rcnn.roi_heads.box_head.fc6.\1"),
        (r"roi_heads\.box_head\.fc2\.(.+)", r"rcnn.roi_heads.box_head.fc7.\1"),
        (r"roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(.+)", r"rcnn.roi_heads.box_predictor.\1.\2"),
        (r"roi_heads\.mask_head\.mask_fcn(\d)\.(.+)", lambda m: f"rcnn.roi_heads.mask_head.{int(m[1]) - 1}.0.{m[2]}"),
        (r"roi_heads\.mask_head\.deconv\.(.+)", r"rcnn.roi_heads.mask_predictor.conv5_mask.\1"),
        (r"roi_heads\.mask_head\.predictor\.(.+)", r"rcnn.roi_heads.mask_predictor.mask_fcn_logits.\1"),
    ]
    if hasattr(model, "semantic_head"):
        rules += _semseg_fpn_rules("sem_seg_head.", "semantic_head.", model.semantic_head)
    return detection_value_changes(rename(kept, rules)), dropped
