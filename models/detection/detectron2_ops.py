"""detectron2's inference conventions as drop-in parts of torchvision's detectors (`detectron2_ops=True`).

torchvision's Faster / Mask R-CNN and detectron2's GeneralizedRCNN hold the same weights but differ in a few
computations; these parts replace torchvision's so that a detectron2 checkpoint computes what it computed
there. Facts from detectron2 (modeling/anchor_generator.py, modeling/poolers.py, layers/roi_align.py,
modeling/meta_arch/rcnn.py, configs/Base-RCNN-FPN.yaml):

- input: BGR in 0..255 minus MODEL.PIXEL_MEAN, divided by PIXEL_STD (1 for the MSRA models), batch padded
  with 0 to a multiple of 32 (`Detectron2Transform`; torchvision normalises RGB [0, 1] with ImageNet
  statistics);
- anchors (`DefaultAnchorGenerator`): per cell size s and aspect ratio a (height / width),
  w = sqrt(s^2 / a), h = a * w, centred on the cell's top-left corner times the level's stride (OFFSET 0.0),
  not rounded; the level's stride is fixed (4..64 on P2..P6). torchvision rounds its cell anchors to
  integers and infers each level's stride as padded image size // feature size, which is wrong for P6
  whenever P5 has an odd size (`Detectron2AnchorGenerator`);
- RoI pooling (`ROIPooler` with POOLER_TYPE "ROIAlignV2", POOLER_SAMPLING_RATIO 0): RoIAlign with
  aligned=True (half-pixel shift) and adaptive sampling, level = floor(4 + log2(sqrt(area) / 224 + 1e-8))
  clamped to P2..P5, scale 1 / stride (`Detectron2RoIPooler`; torchvision's MultiScaleRoIAlign has no
  `aligned` argument);
- mask pasting (layers/mask_ops.py `paste_masks_in_image`): `paste_masks_detectron2`.

torchvision's own MultiScaleRoIAlign / AnchorGenerator / transform are not written by hand here: these
subclasses or small modules exist only because torchvision exposes no option for the differing parts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import MultiScaleRoIAlign, roi_align

from alignbench.models.detectron2 import PIXEL_MEAN_BGR, PIXEL_STD


class Detectron2Transform(GeneralizedRCNNTransform):
    """torchvision's resize / batch transform with detectron2's input normalisation: callers pass RGB in
    [0, 1]; the network sees BGR in 0..255 minus PIXEL_MEAN, over PIXEL_STD."""

    def __init__(self, min_size, max_size: int) -> None:
        super().__init__(min_size, max_size, [x / 255.0 for x in PIXEL_MEAN_BGR], [1.0 / 255.0] * 3)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN_BGR).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(3, 1, 1), persistent=False)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        bgr = image.flip(0) * 255.0
        return (bgr - self.pixel_mean.to(image)) / self.pixel_std.to(image)

    def postprocess(self, result, image_shapes, original_image_sizes):
        """Boxes scaled to the input size as torchvision does (= detectron2's detector_postprocess), masks
        pasted by `paste_masks_detectron2` instead of torchvision's paste."""
        if self.training:
            return result
        for prediction, size, original_size in zip(result, image_shapes, original_image_sizes):
            prediction["boxes"] = resize_boxes(prediction["boxes"], size, original_size)
            if "masks" in prediction:
                prediction["masks"] = paste_masks_detectron2(prediction["masks"], prediction["boxes"], original_size)
        return result


def paste_masks_detectron2(masks: torch.Tensor, boxes: torch.Tensor, image_size: Sequence[int]) -> torch.Tensor:
    """detectron2's `paste_masks_in_image` (layers/mask_ops.py `_do_paste_mask`, its one-mask-at-a-time CPU
    path), returning probabilities (detectron2 then thresholds them at >= 0.5).

    Each image pixel centre (x + 0.5) inside [floor(x0) - 1, ceil(x1) + 1) (clipped to the image) is mapped
    to (x + 0.5 - x0) / (x1 - x0) * 2 - 1 and the M x M mask is sampled there with grid_sample
    (bilinear, align_corners=False, zero padding); torchvision instead pads the mask by one pixel, expands
    the box accordingly, resizes the mask to the integer box and pastes it. Written here because no
    library offers detectron2's variant.

    Args:
        masks: (N, 1, M, M) probabilities; boxes: (N, 4) in image pixels; image_size: (height, width).

    Returns:
        (N, 1, height, width) probabilities.
    """
    height, width = int(image_size[0]), int(image_size[1])
    pasted = masks.new_zeros((len(masks), 1, height, width))
    for index, (mask, box) in enumerate(zip(masks, boxes)):
        x0, y0, x1, y1 = box.tolist()
        left, top = max(math.floor(x0) - 1, 0), max(math.floor(y0) - 1, 0)
        right, bottom = min(math.ceil(x1) + 1, width), min(math.ceil(y1) + 1, height)
        if right <= left or bottom <= top:
            continue
        xs = (torch.arange(left, right, dtype=torch.float32, device=masks.device) + 0.5 - box[0]) / (box[2] - box[0]) * 2 - 1
        ys = (torch.arange(top, bottom, dtype=torch.float32, device=masks.device) + 0.5 - box[1]) / (box[3] - box[1]) * 2 - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]
        sampled = F.grid_sample(mask[None].float(), grid.to(masks.dtype), align_corners=False)
        pasted[index, :, top:bottom, left:right] = sampled[0]
    return pasted


class Detectron2AnchorGenerator(AnchorGenerator):
    """detectron2's DefaultAnchorGenerator (unrounded cell anchors, fixed strides, offset 0) behind
    torchvision's AnchorGenerator interface. The cell anchors are listed size-major, as detectron2 lists
    them (`itertools.product(sizes, aspect_ratios)`); with one size per level, as in every alignbench
    detector, that is also torchvision's order."""

    def __init__(self, sizes: Sequence[Sequence[int]], aspect_ratios: Sequence[Sequence[float]], strides: Sequence[int]) -> None:
        super().__init__(tuple(tuple(s) for s in sizes), tuple(tuple(a) for a in aspect_ratios))
        if len(strides) != len(sizes):
            raise ValueError(f"{len(strides)} strides for {len(sizes)} anchor levels")
        self.strides = tuple(int(stride) for stride in strides)

    def generate_anchors(self, scales, aspect_ratios, dtype=torch.float32, device="cpu") -> torch.Tensor:
        anchors = []
        for size in scales:  # computed in Python floats, as detectron2 does
            for ratio in aspect_ratios:
                width = math.sqrt(float(size) ** 2 / float(ratio))
                height = float(ratio) * width
                anchors.append([-width / 2.0, -height / 2.0, width / 2.0, height / 2.0])
        return torch.tensor(anchors, dtype=dtype, device=device)

    def forward(self, image_list: ImageList, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        grid_sizes = [feature_map.shape[-2:] for feature_map in feature_maps]
        device = feature_maps[0].device
        self.set_cell_anchors(feature_maps[0].dtype, device)
        strides = [[torch.tensor(stride, device=device)] * 2 for stride in self.strides]
        anchors = torch.cat(self.grid_anchors(grid_sizes, strides))
        return [anchors for _ in image_list.image_sizes]


class Detectron2RoIPooler(MultiScaleRoIAlign):
    """detectron2's ROIPooler with ROIAlignV2 (module docstring) in place of torchvision's MultiScaleRoIAlign
    (a subclass because torchvision's detectors accept only that type)."""

    def __init__(
        self,
        featmap_names: Sequence[str],
        output_size: int,
        strides: Mapping[str, int],
        *,
        sampling_ratio: int = 0,
        canonical_box_size: int = 224,
        canonical_level: int = 4,
    ) -> None:
        super().__init__(list(featmap_names), output_size, sampling_ratio)
        self.featmap_names = tuple(featmap_names)
        self.output_size = (output_size, output_size)
        self.strides = tuple(int(strides[name]) for name in self.featmap_names)
        self.sampling_ratio = sampling_ratio
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level
        self.min_level = int(math.log2(self.strides[0]))
        self.max_level = int(math.log2(self.strides[-1]))

    def forward(self, x: Mapping[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes=None) -> torch.Tensor:
        features = [x[name] for name in self.featmap_names]
        all_boxes = torch.cat(boxes)
        batch_index = torch.cat([torch.full((len(b), 1), i, dtype=all_boxes.dtype, device=all_boxes.device) for i, b in enumerate(boxes)])
        rois = torch.cat([batch_index, all_boxes], dim=1)
        area = (all_boxes[:, 2] - all_boxes[:, 0]) * (all_boxes[:, 3] - all_boxes[:, 1])
        levels = torch.floor(self.canonical_level + torch.log2(torch.sqrt(area) / self.canonical_box_size + 1e-8))
        levels = (levels.clamp(self.min_level, self.max_level) - self.min_level).to(torch.int64)
        result = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, (feature, stride) in enumerate(zip(features, self.strides)):
            index = torch.where(levels == level)[0]
            result[index] = roi_align(
                feature, rois[index], self.output_size, spatial_scale=1.0 / stride,
                sampling_ratio=self.sampling_ratio, aligned=True,
            ).to(result.dtype)
        return result
