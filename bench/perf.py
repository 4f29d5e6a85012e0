"""Speed benchmarks that print ratios against a reference run on the same files in the same run.

`semantic_benchmark`: N full-size scene pairs (few instances, where the reference is fastest) are
written once; then (a) alignbench's evaluator computing everything (class / category IoU and iIoU and
four boundary bands) and (b) cityscapesscripts' `evaluateImgLists` (mIoU and iIoU only) run over the same
files. The floor, decoding three PNGs and one exact distance transform per image, is timed too.
Our one-process figure pins OpenCV to one thread so that "one process" means one core's work.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.baselines import coarse_prediction
from bench.data.synthetic import generate_scene, write_scene
from bench.evaluation.semantic import SemanticEvalConfig, evaluate_pairs, pair_predictions
from bench.io import read_png, write_png
from metrics.boundary import boundary_mask, distance_to_boundary
from metrics.labels import CITYSCAPES

log = logging.getLogger(__name__)


@dataclass
class SemanticBenchmark:
    n_images: int
    size: tuple[int, int]
    instances_per_image: float
    floor_s: float
    ours_one_process_s: float
    ours_workers_s: float | None
    workers: int
    reference_s: float
    max_abs_difference: float

    @property
    def ratio_one_process(self) -> float:
        return self.ours_one_process_s / self.reference_s

    @property
    def ratio_workers(self) -> float | None:
        return None if self.ours_workers_s is None else self.ours_workers_s / self.reference_s

    def to_json(self) -> dict:
        return {**asdict(self), "ratio_one_process": self.ratio_one_process, "ratio_workers": self.ratio_workers}

    def report(self) -> str:
        lines = [
            f"semantic evaluation benchmark: {self.n_images} images {self.size[0]}x{self.size[1]}, "
            f"{self.instances_per_image:.1f} instances per image",
            f"  floor: decode 3 PNGs + 1 exact distance transform per image (1 thread): {self.floor_s:8.2f} s",
            f"  (a) alignbench, 1 process, 1 OpenCV thread (IoU, iIoU, categories, 4 bands): {self.ours_one_process_s:8.2f} s",
        ]
        if self.ours_workers_s is not None:
            lines.append(f"  (a) alignbench, --workers {self.workers}: {self.ours_workers_s:8.2f} s")
        lines += [
            f"  (b) cityscapesscripts evaluateImgLists (mIoU, iIoU): {self.reference_s:8.2f} s",
            f"  ratio (a)/(b), 1 process: {self.ratio_one_process:.3f}  (target <= 1.5)",
        ]
        if self.ratio_workers is not None:
            lines.append(f"  ratio (a)/(b), --workers {self.workers}: {self.ratio_workers:.3f}  (target <= 0.85)")
        lines.append(f"  agreement: max |ours - reference| over class and category IoU / iIoU = {self.max_abs_difference:.2e}")
        return "\n".join(lines)


def write_benchmark_pairs(root: Path, n: int, size: tuple[int, int], density: float, seed: int = 0) -> float:
    """Write N val ground-truth frames and stride-8 oracle predictions; return instances per image."""
    instances = 0
    for index in range(n):
        scene = generate_scene(seed, "val", index, size, density, render_image=False)
        write_scene(root, "val", scene)
        ids = np.unique(scene.instance_ids)
        instances += int((ids > 1000).sum())
        prediction = coarse_prediction(scene.label_ids, 8)
        write_png(root / "pred" / scene.city / f"{scene.name}_pred.png", prediction)
    return instances / max(n, 1)


def _time(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def semantic_benchmark(
    n: int = 50,
    size: tuple[int, int] = (1024, 2048),
    workers: int = 2,
    density: float = 0.15,
    root: Path | None = None,
) -> SemanticBenchmark:
    """Run the comparison described in the module docstring and return its figures."""
    from bench.reference import cityscapes_semantic_reference

    with tempfile.TemporaryDirectory(prefix="alignbench-perf-") as scratch:
        root = Path(root) if root else Path(scratch)
        log.info("writing %d benchmark pairs of %dx%d to %s", n, *size, root)
        instances = write_benchmark_pairs(root, n, size, density)
        pairs = pair_predictions(root, root / "pred", "val")
        for pair in pairs:  # warm the page cache so that neither side pays for the disk
            for path in (pair.prediction, pair.frame.label_ids, pair.frame.instance_ids):
                path.read_bytes()
        config = SemanticEvalConfig()
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            floor = _time(lambda: _floor(pairs))
            ours = None

            def run_ours():
                nonlocal ours
                ours = evaluate_pairs(pairs, config, workers=1).compute()

            ours_one = _time(run_ours)
            ours_many = _time(lambda: evaluate_pairs(pairs, config, workers=workers)) if workers > 1 else None
        finally:
            cv2.setNumThreads(threads)
        reference = cityscapes_semantic_reference()
        predictions = [str(pair.prediction) for pair in pairs]
        ground_truths = [str(pair.frame.label_ids) for pair in pairs]
        expected = None

        def run_reference():
            nonlocal expected
            expected = reference.evaluateImgLists(predictions, ground_truths, reference.args)

        reference_time = _time(run_reference)
    return SemanticBenchmark(
        n_images=n,
        size=size,
        instances_per_image=instances,
        floor_s=floor,
        ours_one_process_s=ours_one,
        ours_workers_s=ours_many,
        workers=workers,
        reference_s=reference_time,
        max_abs_difference=_max_difference(ours, expected),
    )


def _floor(pairs) -> None:
    for pair in pairs:
        read_png(pair.prediction)
        label_ids = read_png(pair.frame.label_ids)
        read_png(pair.frame.instance_ids)
        distance_to_boundary(boundary_mask(label_ids, CITYSCAPES.evaluated))


def _max_difference(ours, expected: dict) -> float:
    pairs = [
        (ours.class_iou, expected["classScores"]),
        (ours.class_iiou, expected["classInstScores"]),
        (ours.category_iou, expected["categoryScores"]),
        (ours.category_iiou, expected["categoryInstScores"]),
    ]
    worst = 0.0
    for mine, theirs in pairs:
        for name, value in mine.items():
            other = theirs[name]
            if math.isnan(value) != math.isnan(other):
                return math.inf
            if not math.isnan(value):
                worst = max(worst, abs(value - other))
    return worst
