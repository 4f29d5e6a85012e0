"""detectron2 checkpoints of the COCO detection models (Faster / Mask R-CNN, Panoptic FPN) and detectron2's ops.

The tests write detectron2-layout checkpoints from our own detectors: keys renamed here to detectron2's
(modeling/meta_arch/rcnn.py, proposal_generator/rpn.py, roi_heads/box_head.py, fast_rcnn.py, mask_head.py,
backbone/resnet.py, fpn.py; FaPN fan.py) and the predictors' rows put in detectron2's class order
(background last in cls_score, no background rows in bbox_pred / the mask predictor). They check that the
outputs survive the round trip, that every tensor is used, and that bad files fail with one clear line.
Small inputs and few proposals keep the R50 detectors fast on a CPU.
"""

from __future__ import annotations

import math
import pickle
import re

import pytest
import torch
from alignbench_test_helpers import to_detectron2_pyramid_rules
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import FrozenBatchNorm2d

from alignbench import models
from alignbench.models.checkpoints import CheckpointError
from alignbench.models.detection.detectron2_ops import (
    Detectron2AnchorGenerator,
    Detectron2RoIPooler,
    Detectron2Transform,
    paste_masks_detectron2,
)

IMAGES = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
SMALL = {
    "num_classes": 3,
    "neck_channels": 32,
    "min_size": 64,
    "max_size": 96,
    # few proposals; every detection kept so that the comparison sees many boxes
    "rcnn_options": {"rpn_pre_nms_top_n_test": 60, "rpn_post_nms_top_n_test": 30, "box_score_thresh": 0.0},
}
PANOPTIC = {"num_stuff_classes": 4, "semantic_channels": 32, "score_threshold": 0.0, "stuff_area_limit": 16}


def _options(name: str) -> dict:
    return {**SMALL, **(PANOPTIC if name.startswith("panoptic") else {})}


def _perturbed(model: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """Move every float tensor (statistics kept valid) so that a wrong mapping changes the outputs."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            noise = 0.05 * torch.randn(value.shape, generator=generator)
            value = value + noise.abs() if key.endswith("running_var") else value + noise
        state[key] = value
    model.load_state_dict(state)
    _calibrated(model)
    return model.state_dict()


def _calibrated(model) -> None:
    """Set every frozen BatchNorm's statistics to those of its input on IMAGES (one forward pass), so that
    the randomly initialised ResNet, fed detectron2's 0..255 input, keeps activations of order one and the
    detector returns boxes to compare."""

    def set_statistics(module, inputs):
        x = inputs[0].double()
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)) + 1e-3)

    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    hooks = [module.register_forward_pre_hook(set_statistics) for module in frozen]
    try:
        with torch.no_grad():
            model.rcnn.backbone(model.rcnn.transform(list(IMAGES))[0].tensors)
    finally:
        for hook in hooks:
            hook.remove()


def _semantic_head_key(model, level: str, index: int, rest: str) -> str:
    """Our SemanticFPNHead layer index -> detectron2 SemSegFPNHead's (conv with its norm, then an Upsample)."""
    layers = model.semantic_head.scale_heads[level]
    conv = index if isinstance(layers[index], torch.nn.Conv2d) else index - 1
    upsampled = any(isinstance(layer, torch.nn.Upsample) for layer in layers)
    block = conv // (4 if upsampled else 3)
    theirs = 2 * block if upsampled else block
    return f"sem_seg_head.{level}.{theirs}." + (rest if conv == index else f"norm.{rest}")


def _detectron2_rules(model) -> list:
    return [
        *to_detectron2_pyramid_rules(model, "rcnn.backbone.body", "rcnn.backbone.neck"),
        (r"rcnn\.rpn\.head\.conv\.0\.0\.(.+)", r"proposal_generator.rpn_head.conv.\1"),
        (r"rcnn\.rpn\.head\.cls_logits\.(.+)", r"proposal_generator.rpn_head.objectness_logits.\1"),
        (r"rcnn\.rpn\.head\.bbox_pred\.(.+)", r"proposal_generator.rpn_head.anchor_deltas.\1"),
        (r"rcnn\.roi_heads\.box_head\.fc6\.(.+)", r"roi_heads.box_head.fc1.\1"),
        (r"rcnn\.roi_heads\.box_head\.fc7\.(.+)", r"roi_heads.box_head.fc2.\1"),
        (r"rcnn\.roi_heads\.box_predictor\.(.+)", r"roi_heads.box_predictor.\1"),
        (r"rcnn\.roi_heads\.mask_head\.(\d)\.0\.(.+)", lambda m: f"roi_heads.mask_head.mask_fcn{int(m[1]) + 1}.{m[2]}"),
        (r"rcnn\.roi_heads\.mask_predictor\.conv5_mask\.(.+)", r"roi_heads.mask_head.deconv.\1"),
        (r"rcnn\.roi_heads\.mask_predictor\.mask_fcn_logits\.(.+)", r"roi_heads.mask_head.predictor.\1"),
        (r"semantic_head\.scale_heads\.(p\d)\.(\d+)\.(.+)", lambda m: _semantic_head_key(model, m[1], int(m[2]), m[3])),
        (r"semantic_head\.predictor\.(.+)", r"sem_seg_head.predictor.\1"),
    ]


def _detectron2_layout(model) -> dict[str, torch.Tensor]:
    """Our detector's state in detectron2's key names and class order."""
    theirs = {}
    for key, value in model.state_dict().items():
        for pattern, replacement in _detectron2_rules(model):
            if re.fullmatch(pattern, key):
                new_key = re.sub(pattern, replacement, key)
                break
        else:
            raise AssertionError(f"no rule for {key}")
        if new_key.startswith("roi_heads.box_predictor.cls_score."):
            value = torch.cat([value[1:], value[:1]])  # background last
        elif new_key.startswith("roi_heads.box_predictor.bbox_pred."):
            value = value[4:]  # no background rows
        elif new_key.startswith("roi_heads.mask_head.predictor."):
            value = value[1:]
        theirs[new_key] = value
    return theirs


def _write(path, theirs: dict[str, torch.Tensor], extra: dict[str, torch.Tensor]) -> None:
    if path.suffix == ".pkl":  # model-zoo pickle of numpy arrays
        with path.open("wb") as handle:
            pickle.dump({"model": {k: v.numpy() for k, v in theirs.items()}, "__author__": "test"}, handle)
    else:
        torch.save({"model": {**theirs, **extra}, "iteration": 90000}, path)


def _assert_same_outputs(loaded, source) -> None:
    with torch.no_grad():
        expected, actual = source(IMAGES)[0], loaded(IMAGES)[0]
    assert len(expected["boxes"]) >= 10  # the comparison sees many detections
    for key in ("boxes", "scores", "labels", "masks", "semantic", "panoptic"):
        if key in expected:
            assert torch.equal(actual[key], expected[key]), key
    if "segments_info" in expected:
        assert actual["segments_info"] == expected["segments_info"]


@pytest.fixture(scope="module")
def faster_fapn():
    torch.manual_seed(0)
    source = models.build("faster_rcnn_fapn_r50", backbone_style="detectron2", **SMALL).eval()
    _perturbed(source)
    return source, _detectron2_layout(source)


@pytest.mark.parametrize(("name", "suffix"), [("mask_rcnn_fpn_r50", ".pkl"), ("panoptic_fapn_r50", ".pth")])
def test_detectron2_mask_and_panoptic_checkpoint_round_trip(name, suffix, tmp_path):
    torch.manual_seed(0)
    source = models.build(name, backbone_style="detectron2", **_options(name)).eval()
    _perturbed(source)
    theirs = _detectron2_layout(source)
    path = tmp_path / f"model_final{suffix}"
    _write(path, theirs, {"pixel_mean": torch.zeros(3, 1, 1), "pixel_std": torch.ones(3, 1, 1)})
    loaded = models.build(name, checkpoint=path, **_options(name)).eval()  # the format chooses detectron2's ResNet
    report = loaded.checkpoint_report
    assert report.format == "detectron2" and report.used == len(theirs)
    assert set(report.dropped) == (set() if suffix == ".pkl" else {"pixel_mean", "pixel_std"})
    assert loaded.backbone.style == "detectron2" and loaded.input_bgr
    _assert_same_outputs(loaded, source)


def test_detectron2_faster_rcnn_round_trip_fills_the_background_slots(faster_fapn, tmp_path):
    source, theirs = faster_fapn
    path = tmp_path / "model_final.pth"
    anchors = {f"proposal_generator.anchor_generator.cell_anchors.{i}": torch.zeros(3, 4) for i in range(5)}
    _write(path, theirs, anchors)
    loaded = models.build("faster_rcnn_fapn_r50", checkpoint=path, **SMALL).eval()
    assert loaded.checkpoint_report.used == len(theirs) and set(loaded.checkpoint_report.dropped) == set(anchors)
    predictor = loaded.rcnn.roi_heads.box_predictor
    expected = source.rcnn.roi_heads.box_predictor
    assert torch.equal(predictor.cls_score.weight, expected.cls_score.weight)  # background row back in front
    assert torch.equal(predictor.bbox_pred.weight[4:], expected.bbox_pred.weight[4:])
    assert not predictor.bbox_pred.weight[:4].any()  # torchvision's unused background slot
    _assert_same_outputs(loaded, source)


def _one_line_error(name: str, path, **options) -> str:
    with pytest.raises(CheckpointError) as error:
        models.build(name, checkpoint=path, **options)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    return message


def test_detectron2_detection_errors_wrong_model_missing_key_shape_mismatch(faster_fapn, tmp_path):
    _, theirs = faster_fapn
    good = tmp_path / "faster.pth"
    _write(good, theirs, {})
    message = _one_line_error("mask_rcnn_fapn_r50", good, **SMALL)
    assert "does not fit mask_rcnn_fapn_r50" in message and "missing" in message and "mask_head" in message

    message = _one_line_error("faster_rcnn_fpn_r50", good, **SMALL)
    assert "unexpected tensors in the file (first: rcnn.backbone.neck.top_lateral" in message

    missing = tmp_path / "missing.pth"
    _write(missing, {k: v for k, v in theirs.items() if k != "roi_heads.box_head.fc2.bias"}, {})
    message = _one_line_error("faster_rcnn_fapn_r50", missing, **SMALL)
    assert "1 model tensors missing from the file (first: rcnn.roi_heads.box_head.fc7.bias)" in message

    message = _one_line_error("faster_rcnn_fapn_r50", good, **{**SMALL, "num_classes": 5})
    assert "rcnn.roi_heads.box_predictor.cls_score.weight (4, 1024) vs (6, 1024)" in message

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    assert "cannot read" in _one_line_error("faster_rcnn_fapn_r50", truncated, **SMALL)


# --- detectron2's ops (no detector build) ---------------------------------------------------------------------


def test_detectron2_anchors_are_unrounded_with_fixed_strides():
    sizes, ratios = ((32,), (64,)), ((0.5, 1.0, 2.0),) * 2
    ours = Detectron2AnchorGenerator(sizes, ratios, strides=(32, 64))
    torchvision_anchors = AnchorGenerator(sizes, ratios)
    width = math.sqrt(32**2 / 0.5)  # detectron2: w = sqrt(size^2 / ratio), h = ratio * w
    cell = ours.generate_anchors([32], [0.5, 1.0, 2.0])
    assert torch.allclose(cell[0], torch.tensor([-width / 2, -0.25 * width, width / 2, 0.25 * width]))
    assert torchvision_anchors.generate_anchors([32], [0.5, 1.0, 2.0])[0].tolist() == [-23.0, -11.0, 23.0, 11.0]
    # a 64 x 96 batch: P5 is 2 x 3, P6 (max-pool, stride 2) 1 x 2; torchvision infers P6's x stride as 96 // 2
    images = ImageList(torch.zeros(1, 3, 64, 96), [(64, 96)])
    features = [torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 1, 2)]
    p6 = ours(images, features)[0][-6:]
    assert p6[3:, 0].tolist() == pytest.approx([64 - 32 * math.sqrt(2), 32, 64 - 32 / math.sqrt(2)])
    assert torchvision_anchors(images, features)[0][-3:, 0].tolist() == [48 - 45, 48 - 32, 48 - 23]


def test_detectron2_roi_pooler_levels_and_half_pixel_alignment():
    strides = {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
    pooler = Detectron2RoIPooler(tuple(strides), 2, strides)
    features = {name: torch.full((1, 1, 512 // s, 512 // s), float(s)) for name, s in strides.items()}
    # sqrt(area) 223.9 -> P3 (floor(4 + log2(0.9996)) = 3), 224 -> P4, 448 -> P5, 10 -> P2
    boxes = [torch.tensor([[0, 0, 223.9, 223.9], [0, 0, 224, 224], [0, 0, 448, 448], [0, 0, 10, 10]])]
    assert pooler(features, boxes)[:, 0, 0, 0].tolist() == [8.0, 16.0, 32.0, 4.0]
    ramp = {name: torch.arange(64 // s, dtype=torch.float32).repeat(64 // s, 1)[None, None] for name, s in strides.items()}
    # aligned=True: a box [0, 8] on P2 (stride 4) covers feature x in [-0.5, 1.5]; 2 bins, centres at 0 and 1
    # (sampling ratio 0: ceil(2 / 2) = 1 sample per bin, at the bin centre)
    pooled = pooler(ramp, [torch.tensor([[0.0, 0.0, 8.0, 8.0]])])
    assert pooled[0, 0, 0].tolist() == [0.0, 1.0]


def test_detectron2_mask_paste_samples_pixel_centres_inside_the_box():
    masks = torch.ones(1, 1, 28, 28)
    box = torch.tensor([[10.0, 10.0, 20.0, 20.0]])
    ours = paste_masks_detectron2(masks, box, (32, 32))[0, 0]
    expected = torch.zeros(32, 32)
    expected[10:20, 10:20] = 1.0  # pixel centres 10.5 .. 19.5 map inside the mask; 9.5 and 20.5 do not
    assert torch.allclose(ours, expected, rtol=0, atol=1e-6)  # bilinear weights summing to 1 in float32
    torchvision_pasted = paste_masks_in_image(masks, box, (32, 32))[0, 0]
    assert (torchvision_pasted - expected).abs().max() > 0.1  # the difference this option removes


def test_detectron2_transform_input_is_bgr_0_255_minus_pixel_mean():
    transform = Detectron2Transform(64, 96)
    image = torch.zeros(3, 4, 4)
    image[0] = 1.0  # pure red
    assert torch.allclose(transform.normalize(image)[:, 0, 0], torch.tensor([-103.530, -116.280, 255.0 - 123.675]))
