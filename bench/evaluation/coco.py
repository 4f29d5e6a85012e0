"""Evaluate a COCO results JSON against a COCO instances JSON (bbox or segm AP)."""

from __future__ import annotations

import logging
from pathlib import Path

from alignbench.bench.data.coco import load_json
from alignbench.bench.errors import UserError
from alignbench.metrics.coco import BACKENDS, CocoResult, InvalidCocoError, backend_available, evaluate_coco
from alignbench.reports.console import percent, text_table

log = logging.getLogger(__name__)


def evaluate_coco_files(
    gt_path: str | Path, dt_path: str | Path, iou_type: str = "bbox", backend: str = "pycocotools"
) -> CocoResult:
    """AP of the detections in `dt_path` against `gt_path`; bad input becomes a UserError naming the file."""
    if backend == "faster-coco-eval":
        raise UserError(
            "--backend faster-coco-eval: not offered, its stats are not bit-identical to pycocotools "
            "(precision without np.spacing(1)); `alignbench perf coco` compares the two"
        )
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not backend_available(backend):
        raise UserError(f"--backend {backend}: the package {backend} is not installed (pip install {backend})")
    gt_path, dt_path = Path(gt_path), Path(dt_path)
    gt = load_json(gt_path, "COCO ground-truth JSON")
    detections = load_json(dt_path, "COCO detections JSON")
    try:
        return evaluate_coco(gt, detections, iou_type, backend)
    except InvalidCocoError as error:
        raise UserError(f"{gt_path if error.which == 'ground truth' else dt_path}: {error}") from None


def coco_table(result: CocoResult) -> str:
    """AP, AP50, AP75, APs, APm, APl in percent with one decimal."""
    metrics = result.metrics
    table = text_table([result.iou_type, *metrics], [[result.backend, *(percent(v) for v in metrics.values())]])
    return f"{table}\n\nimages: {result.n_images}, detections: {result.n_detections}"
