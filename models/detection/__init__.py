"""Detection-family models: Faster R-CNN, Mask R-CNN and Panoptic FPN on any pyramid neck.

    model = models.build("mask_rcnn_fapn_r50", num_classes=8, min_size=512, max_size=1024)
    losses = model.loss(images, targets)        # dict of scalar losses (training path)
    outputs = model.predict(images)             # per image: boxes, scores, labels (, masks, panoptic)

See models.detection.rcnn for the interface and models.detection.panoptic for the panoptic merge.
"""

from alignbench.models.detection.panoptic import PanopticFPN, build_panoptic_fpn, combine_panoptic
from alignbench.models.detection.rcnn import (
    DETECTOR_KINDS,
    PyramidBackbone,
    RCNNDetector,
    build_detector,
    build_pyramid_backbone,
    build_rcnn,
)

__all__ = [
    "DETECTOR_KINDS",
    "PanopticFPN",
    "PyramidBackbone",
    "RCNNDetector",
    "build_detector",
    "build_panoptic_fpn",
    "build_pyramid_backbone",
    "build_rcnn",
    "combine_panoptic",
]
