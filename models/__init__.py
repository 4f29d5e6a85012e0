"""The model zoo: registry, model families (detection, fapn, fpt, sfnet) and shared backbones, heads and ops.

    from alignbench import models
    model = models.build("pointrend_fapn_r50", num_classes=19)
    logits = model(images)                      # images: (B, 3, H, W) floats in [0, 1]
    with models.capture(model) as record:       # what the alignment modules did, per level
        model(images)

Importing this package loads torch and torchvision only (never the harness or the metrics).
"""

from alignbench.models.capture import AlignmentModule, CaptureRecord, capture
from alignbench.models.families import load_families
from alignbench.models.registry import (
    TASKS,
    ModelInfo,
    build,
    builder_options,
    count_parameters,
    get_info,
    list_models,
    measured_params,
    register_model,
)
from alignbench.models.scaffolds import list_necks, register_neck
from alignbench.models.segmentation import PyramidSegmenter, SegmentationModel

load_families()

__all__ = [
    "TASKS",
    "AlignmentModule",
    "CaptureRecord",
    "ModelInfo",
    "PyramidSegmenter",
    "SegmentationModel",
    "build",
    "builder_options",
    "capture",
    "count_parameters",
    "get_info",
    "list_models",
    "list_necks",
    "measured_params",
    "register_model",
    "register_neck",
]
