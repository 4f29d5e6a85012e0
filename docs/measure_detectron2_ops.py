"""Measure what each of detectron2's ops changes in a torchvision detector's outputs (docs/zoo.md).

    python docs/measure_detectron2_ops.py [--size 320x480] [--seed 0]

Builds mask_rcnn_fapn_r50 with `backbone_style="detectron2"` (detectron2's ops on), random weights whose
frozen BatchNorm statistics are set from the input (so that activations stay of order one), and compares
its outputs on one random image with the outputs after flipping one part back to torchvision's:
RoIAlign (aligned=False, sampling ratio 2), anchors (rounded, strides inferred), mask pasting; then the box
head on identical proposals with either RoIAlign, and torchvision's resize against detectron2's (PIL on uint8).
Detections are matched greedily by label and IoU >= 0.5 in decreasing score order; printed: detections
in each run, matched pairs, max abs difference of matched scores and box coordinates (pixels), and of
the matched masks' probabilities. Random weights give near-uniform class scores: the figures show the size
of each effect, not its effect on AP.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign, box_iou

from alignbench import models
from alignbench.models.detection.rcnn import ANCHOR_SIZES, ASPECT_RATIOS, ROI_LEVELS


def calibrate(model, images: torch.Tensor) -> None:
    def set_statistics(module, inputs):
        x = inputs[0].double()
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)) + 1e-3)

    hooks = [m.register_forward_pre_hook(set_statistics) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    with torch.no_grad():
        model.rcnn.backbone(model.rcnn.transform(list(images))[0].tensors)
    for hook in hooks:
        hook.remove()


def compare(reference: dict, flipped: dict) -> str:
    used: set[int] = set()
    score_diff = box_diff = mask_diff = 0.0
    pairs = 0
    iou = box_iou(reference["boxes"], flipped["boxes"]) if len(flipped["boxes"]) else None
    for i in range(len(reference["boxes"])):
        if iou is None:
            break
        candidates = [(float(iou[i, j]), j) for j in range(len(flipped["boxes"]))
                      if j not in used and flipped["labels"][j] == reference["labels"][i] and iou[i, j] >= 0.5]
        if not candidates:
            continue
        _, j = max(candidates)
        used.add(j)
        pairs += 1
        score_diff = max(score_diff, float((reference["scores"][i] - flipped["scores"][j]).abs()))
        box_diff = max(box_diff, float((reference["boxes"][i] - flipped["boxes"][j]).abs().max()))
        if "masks" in reference:
            mask_diff = max(mask_diff, float((reference["masks"][i] - flipped["masks"][j]).abs().max()))
    return (f"detections {len(reference['boxes'])} vs {len(flipped['boxes'])}, matched {pairs}; max abs diff: "
            f"score {score_diff:.4f}, box {box_diff:.2f} px, mask probability {mask_diff:.3f}")


def same_proposals(model, images: torch.Tensor) -> str:
    """Box head outputs on the reference run's proposals, detectron2's RoIAlign vs torchvision's: max abs
    difference of the class probabilities and of the decoded boxes (all classes, every proposal)."""
    rcnn = model.rcnn
    with model._head_mode(training=False):
        image_list, _, features, _ = model._prepare(images, None)
        proposals, _ = rcnn.rpn(image_list, features)
        outputs = []
        for pooler in (rcnn.roi_heads.box_roi_pool, MultiScaleRoIAlign(list(ROI_LEVELS), 7, 2)):
            pooled = pooler(features, proposals, image_list.image_sizes)
            logits, deltas = rcnn.roi_heads.box_predictor(rcnn.roi_heads.box_head(pooled))
            outputs.append((logits.softmax(-1), rcnn.roi_heads.box_coder.decode(deltas, proposals)))
    (p0, b0), (p1, b1) = outputs
    return (f"{len(proposals[0])} proposals; max abs diff: class probability {float((p0 - p1).abs().max()):.4f} "
            f"(largest probability {float(p0.max()):.4f}), decoded box {float((b0 - b1).abs().max()):.2f} px, "
            f"mean {float((b0 - b1).abs().mean()):.3f} px")


def resized_like_detectron2(images: torch.Tensor, short: int, longest: int) -> torch.Tensor:
    """detectron2's test-time ResizeShortestEdge (data/transforms/augmentation_impl.py, transform.py): output
    size rounded with int(x + 0.5), PIL bilinear on the uint8 image."""
    height, width = images.shape[-2:]
    scale = short / min(height, width)
    new_height, new_width = scale * height, scale * width
    if max(new_height, new_width) > longest:
        scale = longest / max(new_height, new_width)
        new_height, new_width = new_height * scale, new_width * scale
    size = (int(new_width + 0.5), int(new_height + 0.5))
    uint8 = (images[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    resized = np.asarray(Image.fromarray(uint8).resize(size, Image.BILINEAR))
    return torch.from_numpy(resized.copy()).permute(2, 0, 1)[None].float() / 255


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="320x480")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    torch.manual_seed(args.seed)
    images = torch.rand(1, 3, height, width)
    model = models.build(
        "mask_rcnn_fapn_r50", num_classes=80, backbone_style="detectron2", min_size=height, max_size=width,
        rcnn_options={"box_score_thresh": 0.0},
    ).eval()
    calibrate(model, images)
    rcnn = model.rcnn
    with torch.no_grad():
        reference = model(images)[0]
        detectron2_parts = (rcnn.roi_heads.box_roi_pool, rcnn.roi_heads.mask_roi_pool)
        rcnn.roi_heads.box_roi_pool = MultiScaleRoIAlign(list(ROI_LEVELS), 7, 2)
        rcnn.roi_heads.mask_roi_pool = MultiScaleRoIAlign(list(ROI_LEVELS), 14, 2)
        print("RoIAlign aligned=False, sampling 2:", compare(reference, model(images)[0]))
        rcnn.roi_heads.box_roi_pool, rcnn.roi_heads.mask_roi_pool = detectron2_parts

        detectron2_anchors = rcnn.rpn.anchor_generator
        rcnn.rpn.anchor_generator = AnchorGenerator(ANCHOR_SIZES, ASPECT_RATIOS)
        print("torchvision anchors:", compare(reference, model(images)[0]))
        rcnn.rpn.anchor_generator = detectron2_anchors

        transform = rcnn.transform
        torchvision_postprocess = GeneralizedRCNNTransform.postprocess.__get__(transform)
        transform.postprocess = torchvision_postprocess
        print("torchvision mask pasting:", compare(reference, model(images)[0]))
        del transform.postprocess

        print("RoIAlign on the same proposals:", same_proposals(model, images))

        # resize: a 1.5x larger uint8 image, resized by torchvision's transform (float bilinear) or first by
        # detectron2's rule (PIL on uint8) and then passed at the test size (torchvision's resize is then
        # the identity); boxes of the second run scaled back to the large image
        large = torch.nn.functional.interpolate(images, scale_factor=1.5, mode="bilinear", align_corners=False)
        large = (large.clamp(0, 1) * 255).round() / 255
        by_torchvision = model(large)[0]
        by_detectron2 = model(resized_like_detectron2(large, height, width))[0]
        by_detectron2["boxes"] = by_detectron2["boxes"] * 1.5
        by_detectron2.pop("masks")
        by_torchvision.pop("masks")
        print("resize, torchvision's vs detectron2's (boxes only):", compare(by_detectron2, by_torchvision))


if __name__ == "__main__":
    main()
