"""Evaluation loops that run a model over a validation split and feed the metric accumulators."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from alignbench.bench.data.cityscapes import CityscapesFrame, read_frame
from alignbench.bench.train import image_to_tensor
from alignbench.metrics.boundary import DEFAULT_BANDS
from alignbench.metrics.semantic import SemanticAccumulator, SemanticResult


@torch.inference_mode()
def evaluate_semantic_model(
    model: torch.nn.Module,
    frames: Sequence[CityscapesFrame],
    device: str = "cpu",
    input_size: tuple[int, int] | None = None,
    max_side: int | None = None,
    bands: Sequence[int] = DEFAULT_BANDS,
    progress: bool = False,
) -> SemanticAccumulator:
    """Predict every frame at `input_size` (default: its own size), downscaled further so that its longer
    side is at most `max_side`; upsample the logits to the ground-truth size and accumulate train-id
    predictions on the model's device.

    Under torch.distributed each rank predicts its shard (frame i on rank i % world) and the returned
    accumulator, on every rank, is the exact merge of all shards.
    """
    from tqdm import tqdm

    from alignbench.bench import distributed

    model.eval().to(device)
    accumulator = SemanticAccumulator(bands=bands, pred_ids="train")
    for frame in tqdm(distributed.shard(frames), desc="evaluating", unit="img", disable=not progress, leave=False):
        sample = read_frame(frame)
        image = image_to_tensor(sample.image)[None].to(device)
        height, width = sample.label_ids.shape
        size = tuple(input_size) if input_size else (height, width)
        if max_side and max(size) > max_side:
            scale = max_side / max(size)
            size = (max(32, round(size[0] * scale)), max(32, round(size[1] * scale)))
        if size != (height, width):
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=size[0] < height)
        logits = model(image)
        if logits.shape[-2:] != (height, width):
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        prediction = logits.argmax(dim=1)[0].to(torch.uint8)
        accumulator.update(
            prediction,
            torch.from_numpy(sample.label_ids).to(device),
            torch.from_numpy(sample.instance_ids).to(device),
        )
    return distributed.merge_accumulators(accumulator)


def semantic_metrics(result: SemanticResult) -> dict:
    """The metric keys of the paper tables (reports/paper vocabulary) plus per-class scores for figures."""
    bands = {f"band_{width}": value for width, value in result.boundary_miou.items()}
    finite = [value for value in bands.values() if not math.isnan(value)]
    return {
        "mIoU": result.miou,
        "mIoU_val": result.miou,  # the papers' "val" column: we always evaluate the val split
        "iIoU": result.iiou,
        "IoU_cat": result.iou_category,
        "iIoU_cat": result.iiou_category,
        **bands,
        "band_mean": sum(finite) / len(finite) if finite else math.nan,
        "class_IoU": dict(result.class_iou),
        "n_images": result.n_images,
    }
