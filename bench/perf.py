"""Speed benchmarks that print ratios against a reference run on the same files in the same run.

`alignbench perf semantic|panoptic --workload NAME` writes a deterministic fixture for one workload of
`WORKLOADS` (image size, instances or segments per image, how the predictions are made), warms the page
cache, then times on the same files:

* (a) the whole `alignbench eval ...` command as a subprocess (`python -m alignbench`, start-up, imports,
  listing, decoding, scoring and writing the JSON included), with `--workers 1` and `--workers N`;
* (a') our evaluator called in this process (no start-up), one process and N workers;
* (b) the reference, in this process: cityscapesscripts 2.3.0 `evaluateImgLists` (mIoU and iIoU; it
  computes no boundary bands, ours computes four) or its panoptic evaluator's single-process path
  (`pq_compute_single_core`, then `average_pq`).

"One process" means one core's work: OpenCV is pinned to one thread (OPENCV_FOR_THREADS_NUM=1 for the
subprocess, cv2.setNumThreads(1) here), as the references are single-threaded. The ratios are (a) / (b)
and (a') / (b). CPU times of (a) with one process and of (b) are reported too: they grow far less than
wall time when other work shares the cores (only through shared caches and memory bandwidth). The scores of every run of ours are compared with the
reference's (`max_abs_difference`). The floor, decoding the PNGs that every evaluator must decode, is
timed too.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from alignbench.bench.baselines import coarse_prediction
from alignbench.bench.data.coco import (
    instance_annotations,
    instance_categories,
    panoptic_categories,
    panoptic_from_instance_ids,
    read_panoptic_png,
    write_panoptic_png,
)
from alignbench.bench.data.synthetic import generate_scene, write_scene
from alignbench.bench.evaluation.panoptic import evaluate_panoptic_files, evaluate_panoptic_pairs, load_panoptic_inputs
from alignbench.bench.evaluation.semantic import SemanticEvalConfig, evaluate_pairs, pair_predictions
from alignbench.bench.io import read_png, write_json_atomic, write_png
from alignbench.bench.reference import cityscapes_panoptic_scores, cityscapes_semantic_reference
from alignbench.metrics.boundary import band_levels, boundary_mask
from alignbench.metrics.coco import backend_available, decode_segmentation, encode_mask, evaluate_coco, faster_coco_eval_for_comparison
from alignbench.metrics.labels import CITYSCAPES
from alignbench.metrics.panoptic import PanopticAccumulator, _joint_pairs
from alignbench.metrics.semantic import SemanticAccumulator, _joint_histogram

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Workload:
    """One benchmark fixture: image size, things per scene (generator density), default image count and
    the kind of prediction ("oracle": a stride-8 coarse prediction or a lightly perturbed panoptic one;
    "classes": many classes confused; "fragments": a poor model's many small fragments)."""

    name: str
    size: tuple[int, int]
    n: int
    density: float
    prediction: str
    description: str


WORKLOADS = {
    workload.name: workload
    for workload in (
        Workload("small-few", (512, 1024), 200, 0.15, "oracle", "512x1024, few instances / segments per image"),
        Workload("small-many", (512, 1024), 200, 12.0, "oracle", "512x1024, ~200 instances / segments per image"),
        Workload("large-few", (1024, 2048), 120, 0.15, "oracle", "1024x2048, few instances / segments per image"),
        Workload("large-many", (1024, 2048), 120, 12.0, "oracle", "1024x2048, ~200 instances / segments per image"),
        Workload("classes", (1024, 2048), 120, 1.0, "classes", "1024x2048, predictions confusing every class"),
        Workload("fragments", (512, 1024), 200, 1.0, "fragments", "512x1024, a poor model's many small fragments"),
    )
}


def workload_names() -> tuple[str, ...]:
    return tuple(WORKLOADS)


def _time(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _time_with_cpu(function) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    start, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - start, time.process_time() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_cli(arguments: list, workers: int, out: Path) -> tuple[float, float, dict]:
    """Wall time and CPU time (the process and its workers) of `python -m alignbench ARGS --workers N
    --quiet --json OUT`, and its JSON output."""
    command = [sys.executable, "-m", "alignbench", *map(str, arguments), "--workers", str(workers), "--quiet", "--json", str(out)]
    environment = {**os.environ, "OPENCV_FOR_THREADS_NUM": "1"}
    cpu = _children_cpu()
    start = time.perf_counter()
    completed = subprocess.run(command, env=environment, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({completed.returncode}): {completed.stderr.strip()}")
    return elapsed, _children_cpu() - cpu, json.loads(out.read_text())


@dataclass
class _Best:
    """The best (smallest) times seen over repeated, alternating runs."""

    command_one: float
    command_one_cpu: float
    command_many: float | None
    reference: float
    reference_cpu: float

    def add(self, command_one: tuple[float, float], command_many: float | None, reference: tuple[float, float]) -> None:
        self.command_one = min(self.command_one, command_one[0])
        self.command_one_cpu = min(self.command_one_cpu, command_one[1])
        if command_many is not None:
            self.command_many = min(self.command_many, command_many)
        self.reference = min(self.reference, reference[0])
        self.reference_cpu = min(self.reference_cpu, reference[1])


class _OneOpenCVThread:
    def __enter__(self):
        self.threads = cv2.getNumThreads()
        cv2.setNumThreads(1)

    def __exit__(self, *exc) -> None:
        cv2.setNumThreads(self.threads)


@dataclass
class EvaluatorBenchmark:
    """The figures of one workload for one evaluator (semantic or panoptic); seconds throughout."""

    evaluator: str
    workload: str
    description: str
    n_images: int
    size: tuple[int, int]
    gt_per_image: float  # instances (semantic) or ground-truth segments (panoptic)
    pred_per_image: float | None  # predicted segments (panoptic)
    floor_s: float
    command_one_process_s: float
    command_workers_s: float | None
    in_process_one_s: float
    in_process_workers_s: float | None
    workers: int
    reference_s: float
    max_abs_difference: float
    command_one_process_cpu_s: float = math.nan  # CPU time: less sensitive than wall time to other load
    reference_cpu_s: float = math.nan
    repeat: int = 1  # whole commands and reference run this many times, alternating; the best of each is kept
    stages_s: dict = field(default_factory=dict)  # where our one-process time goes, stage by stage
    accumulator_bytes: int = 0  # one pickled accumulator: what a worker sends back per chunk

    @property
    def _best_of(self) -> str:
        return f" (best of {self.repeat})" if self.repeat > 1 else ""

    def _ratio(self, seconds: float | None) -> float | None:
        return None if seconds is None else seconds / self.reference_s

    @property
    def ratio_one_process(self) -> float:
        """Whole `alignbench eval` command, one process, over the reference's in-process time."""
        return self._ratio(self.command_one_process_s)

    @property
    def ratio_workers(self) -> float | None:
        return self._ratio(self.command_workers_s)

    @property
    def ratio_in_process_one(self) -> float:
        return self._ratio(self.in_process_one_s)

    @property
    def ratio_in_process_workers(self) -> float | None:
        return self._ratio(self.in_process_workers_s)

    @property
    def ratio_one_process_cpu(self) -> float:
        """CPU time of the whole one-process command over the reference's CPU time."""
        return self.command_one_process_cpu_s / self.reference_cpu_s

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "ratio_one_process": self.ratio_one_process,
            "ratio_workers": self.ratio_workers,
            "ratio_in_process_one": self.ratio_in_process_one,
            "ratio_in_process_workers": self.ratio_in_process_workers,
            "ratio_one_process_cpu": self.ratio_one_process_cpu,
        }

    def report(self) -> str:
        per_image = 1000.0 / max(self.n_images, 1)
        reference = {
            "semantic": "cityscapesscripts evaluateImgLists (mIoU, iIoU; no bands)",
            "panoptic": "cityscapesscripts pq_compute_single_core + average_pq",
        }[self.evaluator]
        what = "instances" if self.evaluator == "semantic" else "gt segments"
        counts = f"{self.gt_per_image:.1f} {what}"
        if self.pred_per_image is not None:
            counts += f", {self.pred_per_image:.1f} predicted segments"
        lines = [
            f"{self.evaluator} / {self.workload}: {self.n_images} images {self.size[0]}x{self.size[1]}, {counts} per image "
            f"({self.description})",
            f"  floor: decoding the PNGs, 1 thread: {self.floor_s:8.2f} s ({self.floor_s * per_image:.0f} ms/image)",
            f"  (b) reference, in process{self._best_of}: {self.reference_s:8.2f} s ({self.reference_s * per_image:.0f} ms/image), {reference}",
            f"  (a) `alignbench eval {self.evaluator}` as a process, --workers 1{self._best_of}: {self.command_one_process_s:8.2f} s"
            f"   ratio (a)/(b) {self.ratio_one_process:.3f}",
        ]
        if self.command_workers_s is not None:
            lines.append(
                f"  (a) `alignbench eval {self.evaluator}` as a process, --workers {self.workers}{self._best_of}: {self.command_workers_s:8.2f} s"
                f"   ratio (a)/(b) {self.ratio_workers:.3f}"
            )
        lines.append(
            f"  (a') in process, 1 process: {self.in_process_one_s:8.2f} s   ratio {self.ratio_in_process_one:.3f}"
        )
        if self.in_process_workers_s is not None:
            lines.append(
                f"  (a') in process, {self.workers} workers: {self.in_process_workers_s:8.2f} s   ratio {self.ratio_in_process_workers:.3f}"
            )
        if self.stages_s:
            stages = ", ".join(f"{name} {seconds * per_image:.1f}" for name, seconds in self.stages_s.items())
            lines.append(f"  profile, ms/image (1 process, 1 thread): {stages}")
            lines.append(
                f"  start-up and listing: {self.command_one_process_s - self.in_process_one_s:.2f} s (command minus in-process); "
                f"a worker returns {self.accumulator_bytes / 1024:.0f} kB per chunk"
            )
        lines.append(
            f"  CPU time (less affected by other load than wall time): the --workers 1 command {self.command_one_process_cpu_s:.2f} s, "
            f"the reference {self.reference_cpu_s:.2f} s, ratio {self.ratio_one_process_cpu:.3f}"
        )
        lines.append(f"  agreement: max |ours - reference| over every score, every run of ours = {self.max_abs_difference:.2e}")
        return "\n".join(lines)


def summary_table(results: list[EvaluatorBenchmark]) -> str:
    """One line per workload: the reference's seconds and every ratio against it (ours / reference)."""
    header = (
        f"{'evaluator':9s} {'workload':11s} {'size':>9s} {'n':>4s} {'ref s':>7s} "
        f"{'1 proc':>7s} {'workers':>7s} {'in-proc 1':>9s} {'in-proc W':>9s} {'CPU 1':>6s} {'max |diff|':>10s}"
    )
    lines = [header]
    for r in results:
        workers = "-" if r.ratio_workers is None else f"{r.ratio_workers:.3f}"
        in_workers = "-" if r.ratio_in_process_workers is None else f"{r.ratio_in_process_workers:.3f}"
        lines.append(
            f"{r.evaluator:9s} {r.workload:11s} {r.size[0]:>4d}x{r.size[1]:<4d} {r.n_images:>4d} {r.reference_s:7.2f} "
            f"{r.ratio_one_process:7.3f} {workers:>7s} {r.ratio_in_process_one:9.3f} {in_workers:>9s} {r.ratio_one_process_cpu:6.3f} "
            f"{r.max_abs_difference:10.1e}"
        )
    return "\n".join(lines)


# --- semantic ---------------------------------------------------------------------------------------------


def semantic_prediction(label_ids: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A label-id prediction of one ground-truth map: "oracle" is the stride-8 coarse prediction;
    "classes" paints a third of its 32x32 cells with random label ids (all 34, ignored ones too);
    "fragments" scatters small rectangles of random evaluated classes over it (one per 400 pixels)."""
    prediction = coarse_prediction(label_ids, 8)
    height, width = prediction.shape
    if kind == "classes":
        cells = rng.integers(0, CITYSCAPES.num_ids, size=(height // 32 + 1, width // 32 + 1)).astype(np.uint8)
        painted = rng.random(cells.shape) < 1 / 3
        big = np.kron(np.where(painted, cells, 255).astype(np.uint8), np.ones((32, 32), np.uint8))[:height, :width]
        prediction = np.where(big != 255, big, prediction)
    elif kind == "fragments":
        evaluated = CITYSCAPES.evaluated_ids
        for _ in range(height * width // 400):
            h, w = (int(v) for v in rng.integers(1, 9, 2))
            y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            prediction[y : y + h, x : x + w] = evaluated[rng.integers(0, len(evaluated))]
    elif kind != "oracle":
        raise ValueError(f"unknown prediction kind {kind!r}")
    return prediction


def write_benchmark_pairs(
    root: Path, n: int, size: tuple[int, int], density: float, seed: int = 0, prediction: str = "oracle"
) -> float:
    """Write N val ground-truth frames and their predictions (`semantic_prediction`); return instances per image."""
    instances = 0
    rng = np.random.default_rng(seed)
    for index in range(n):
        scene = generate_scene(seed, "val", index, size, density, render_image=False)
        write_scene(root, "val", scene)
        ids = np.unique(scene.instance_ids)
        instances += int((ids > 1000).sum())
        write_png(root / "pred" / scene.city / f"{scene.name}_pred.png", semantic_prediction(scene.label_ids, prediction, rng))
    return instances / max(n, 1)


def semantic_benchmark(
    workload: str = "large-few",
    n: int | None = None,
    size: tuple[int, int] | None = None,
    workers: int = 2,
    density: float | None = None,
    root: Path | None = None,
    repeat: int = 1,
) -> EvaluatorBenchmark:
    """Time one workload as described in the module docstring; n / size / density override the workload's.
    With repeat > 1 the whole commands and the reference run again, alternating, and each keeps its best."""
    spec = WORKLOADS[workload]
    n, size, density = n or spec.n, size or spec.size, spec.density if density is None else density
    with tempfile.TemporaryDirectory(prefix="alignbench-perf-") as scratch:
        root = Path(root) if root else Path(scratch) / "data"
        log.info("writing %d benchmark pairs of %dx%d (%s) to %s", n, *size, workload, root)
        instances = write_benchmark_pairs(root, n, size, density, prediction=spec.prediction)
        pairs = pair_predictions(root, root / "pred", "val")
        for pair in pairs:  # warm the page cache so that neither side pays for the disk
            for path in (pair.prediction, pair.frame.label, pair.frame.instances):
                path.read_bytes()
        arguments = ["eval", "semantic", "--gt", root, "--pred", root / "pred"]
        command_one, command_one_cpu, ours_json = _run_cli(arguments, 1, Path(scratch) / "one.json")
        command_many, _, many_json = _run_cli(arguments, workers, Path(scratch) / "many.json") if workers > 1 else (None, None, None)
        config = SemanticEvalConfig()
        with _OneOpenCVThread():
            floor = _time(lambda: _floor(pairs))
            stages = semantic_stage_times(pairs)
            in_process = {}
            in_one = _time(lambda: in_process.setdefault(1, evaluate_pairs(pairs, config, workers=1).compute().to_json()))
            in_many = (
                _time(lambda: in_process.setdefault(workers, evaluate_pairs(pairs, config, workers=workers).compute().to_json()))
                if workers > 1 else None
            )
        reference = cityscapes_semantic_reference()
        predictions = [str(pair.prediction) for pair in pairs]
        ground_truths = [str(pair.frame.label) for pair in pairs]
        expected = {}
        reference_time, reference_cpu = _time_with_cpu(
            lambda: expected.update(reference.evaluateImgLists(predictions, ground_truths, reference.args))
        )
        accumulator_bytes = len(pickle.dumps(evaluate_pairs(pairs[:1], config, workers=1)))
        best = _Best(command_one, command_one_cpu, command_many, reference_time, reference_cpu)
        for _ in range(repeat - 1):
            best.add(
                _run_cli(arguments, 1, Path(scratch) / "one.json")[:2],
                _run_cli(arguments, workers, Path(scratch) / "many.json")[0] if workers > 1 else None,
                _time_with_cpu(lambda: reference.evaluateImgLists(predictions, ground_truths, reference.args)),
            )
    runs = [ours_json, *in_process.values()] + ([many_json] if many_json is not None else [])
    return EvaluatorBenchmark(
        evaluator="semantic",
        workload=workload,
        description=spec.description,
        n_images=n,
        size=tuple(size),
        gt_per_image=instances,
        pred_per_image=None,
        floor_s=floor,
        command_one_process_s=best.command_one,
        command_workers_s=best.command_many,
        in_process_one_s=in_one,
        in_process_workers_s=in_many,
        workers=workers,
        reference_s=best.reference,
        max_abs_difference=max(semantic_difference(run, expected) for run in runs),
        command_one_process_cpu_s=best.command_one_cpu,
        reference_cpu_s=best.reference_cpu,
        repeat=repeat,
        stages_s=stages,
        accumulator_bytes=accumulator_bytes,
    )


def semantic_stage_times(pairs) -> dict[str, float]:
    """Seconds per stage of our semantic evaluation over all pairs (4 bands, instances), one thread."""
    accumulator = SemanticAccumulator()
    totals = dict.fromkeys(("decode 3 PNGs", "boundary", "bands", "confusion histogram", "instances"), 0.0)
    for pair in pairs:
        start = time.perf_counter()
        prediction, label_ids, instance_ids = read_png(pair.prediction), read_png(pair.frame.label), read_png(pair.frame.instances)
        marks = time.perf_counter()
        boundary = boundary_mask(label_ids, CITYSCAPES.evaluated)
        marks_bands = time.perf_counter()
        levels = band_levels(boundary, accumulator.bands)
        marks_histogram = time.perf_counter()
        _joint_histogram(label_ids, prediction, levels, CITYSCAPES.num_ids, len(accumulator.bands) + 1)
        marks_instances = time.perf_counter()
        accumulator._add_instances_numpy(prediction, instance_ids)
        end = time.perf_counter()
        totals["decode 3 PNGs"] += marks - start
        totals["boundary"] += marks_bands - marks
        totals["bands"] += marks_histogram - marks_bands
        totals["confusion histogram"] += marks_instances - marks_histogram
        totals["instances"] += end - marks_instances
    return totals


def _floor(pairs) -> None:
    for pair in pairs:
        read_png(pair.prediction)
        read_png(pair.frame.label)
        read_png(pair.frame.instances)


def semantic_difference(ours: dict, expected: dict) -> float:
    """Largest |ours - reference| over class and category IoU / iIoU (ours as `eval semantic` JSON, where
    NaN is null); inf when one side is NaN and the other is not."""
    pairs = [
        (ours["class_IoU"], expected["classScores"]),
        (ours["class_iIoU"], expected["classInstScores"]),
        (ours["category_IoU"], expected["categoryScores"]),
        (ours["category_iIoU"], expected["categoryInstScores"]),
    ]
    worst = 0.0
    for mine, theirs in pairs:
        for name, value in mine.items():
            value = math.nan if value is None else value
            other = theirs[name]
            if math.isnan(value) != math.isnan(other):
                return math.inf
            if not math.isnan(value):
                worst = max(worst, abs(value - other))
    return worst


# --- panoptic quality -------------------------------------------------------------------------------------
#
# Ground truth: the synthetic instanceIds through bench.data.coco (createPanopticImgs' conventions);
# predictions: `perturbed_panoptic_prediction`, then, by workload, categories redrawn ("classes") or every
# segment cut along a 32 px grid into fragments with ids of their own ("fragments").


def perturbed_panoptic_prediction(
    gt_map: np.ndarray,
    gt_segments: list[dict],
    categories: list[dict],
    rng: np.random.Generator,
    shift: int = 2,
) -> tuple[np.ndarray, list[dict]]:
    """A prediction that exercises every PQ rule, from a ground-truth segment map and its segments_info.

    The map is shifted by up to `shift` px; most segments keep their category under a new random 24-bit
    id, some change category, some vanish (VOID), some large ones are split in two; crowd regions become
    a segment of their own class (ignored: mostly on crowd) or of another class (a false positive); the
    gt VOID area may become one segment (ignored: mostly on VOID); rectangles of random classes are
    painted on top (false positives, or ignored when they lie mostly on VOID); a few holes are VOID.
    Returns (int32 id map, segments_info with id and category_id).
    """
    height, width = gt_map.shape
    category_ids = [int(c["id"]) for c in categories]
    thing_ids = [int(c["id"]) for c in categories if c.get("isthing")]
    stuff_ids = [i for i in category_ids if i not in thing_ids]
    unused = iter(rng.choice(np.arange(1, 256**3, dtype=np.int64), size=len(gt_segments) * 2 + 64, replace=False))
    category_of: dict[int, int] = {}

    def new_segment(category_id: int) -> int:
        segment_id = int(next(unused))
        category_of[segment_id] = int(category_id)
        return segment_id

    table = np.zeros(int(gt_map.max()) + 1, np.int64)  # gt id -> predicted id (0: VOID)
    if rng.random() < 0.7:  # the VOID area as one segment: mostly VOID, so ignored
        table[0] = new_segment(rng.choice(stuff_ids or category_ids))
    for segment in gt_segments:
        category_id = int(segment["category_id"])
        draw = rng.random()
        if segment.get("iscrowd"):
            other = [i for i in thing_ids if i != category_id] or category_ids
            table[segment["id"]] = new_segment(category_id if draw < 0.7 else rng.choice(other))
        elif draw < 0.08:
            table[segment["id"]] = 0  # missed: a false negative
        elif draw < 0.16:
            table[segment["id"]] = new_segment(rng.choice(category_ids))  # possibly another class
        else:
            table[segment["id"]] = new_segment(category_id)
    source = np.roll(gt_map, tuple(int(v) for v in rng.integers(-shift, shift + 1, 2)), axis=(0, 1))
    prediction = table[source]
    for segment in gt_segments:  # split a few large segments: the right part gets its own id
        x, y, w, h = segment["bbox"]
        if segment["area"] > 0.02 * height * width and rng.random() < 0.3 and table[segment["id"]]:
            cut = x + int(w * rng.uniform(0.2, 0.6))
            region = prediction[y : y + h, cut : x + w]
            region[region == table[segment["id"]]] = new_segment(category_of[int(table[segment["id"]])])
    for _ in range(int(rng.integers(2, 6))):  # rectangles of random classes
        h, w = int(rng.integers(4, max(5, height // 4))), int(rng.integers(4, max(5, width // 4)))
        y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        prediction[y : y + h, x : x + w] = new_segment(rng.choice(category_ids))
    for _ in range(int(rng.integers(1, 4))):  # VOID holes
        h, w = int(rng.integers(2, max(3, height // 8))), int(rng.integers(2, max(3, width // 8)))
        y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        prediction[y : y + h, x : x + w] = 0
    present = np.unique(prediction)
    segments = [{"id": int(i), "category_id": category_of[int(i)]} for i in present if i != 0]
    return prediction.astype(np.int32), segments


def reworked_panoptic_prediction(
    prediction: np.ndarray, segments: list[dict], categories: list[dict], kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, list[dict]]:
    """Apply a workload's prediction kind to a perturbed prediction (see the comment above)."""
    if kind == "oracle":
        return prediction, segments
    category_ids = [int(c["id"]) for c in categories]
    if kind == "classes":
        for segment in segments:
            if rng.random() < 0.5:
                segment["category_id"] = int(rng.choice(category_ids))
        return prediction, segments
    if kind != "fragments":
        raise ValueError(f"unknown prediction kind {kind!r}")
    height, width = prediction.shape
    tile = (np.arange(height)[:, None] // 32) * (width // 32 + 1) + np.arange(width)[None, :] // 32
    key = prediction.astype(np.int64) * int(tile.max() + 1) + tile
    keys, inverse = np.unique(key.ravel(), return_inverse=True)
    old_ids = keys // int(tile.max() + 1)
    category_of = {int(s["id"]): int(s["category_id"]) for s in segments}
    new_ids = np.zeros(len(keys), np.int64)
    new_ids[old_ids != 0] = rng.choice(np.arange(1, 256**3, dtype=np.int64), size=int((old_ids != 0).sum()), replace=False)
    fragments = new_ids[inverse].reshape(height, width).astype(np.int32)
    fragment_segments = [
        {"id": int(new_id), "category_id": category_of[int(old_id)]} for new_id, old_id in zip(new_ids, old_ids) if old_id
    ]
    return fragments, fragment_segments


def write_panoptic_benchmark_pairs(
    root: Path, n: int, size: tuple[int, int], density: float = 1.0, seed: int = 0, prediction: str = "oracle"
) -> dict[str, Path]:
    """Write N synthetic panoptic ground-truth / prediction pairs (PNGs + JSON) under `root`."""
    paths = {"gt_json": root / "gt.json", "gt_dir": root / "gt", "pred_json": root / "pred.json", "pred_dir": root / "pred"}
    categories = panoptic_categories()
    rng = np.random.default_rng(seed)
    images, gt_annotations, pred_annotations = [], [], []
    for index in range(n):
        scene = generate_scene(seed, "val", index, size, density, render_image=False)
        gt_map, gt_segments = panoptic_from_instance_ids(scene.instance_ids)
        pred_map, pred_segments = perturbed_panoptic_prediction(gt_map, gt_segments, categories, rng)
        pred_map, pred_segments = reworked_panoptic_prediction(pred_map, pred_segments, categories, prediction, rng)
        name = f"{scene.name}_panoptic.png"
        write_panoptic_png(paths["gt_dir"] / name, gt_map)
        write_panoptic_png(paths["pred_dir"] / name, pred_map)
        images.append({"id": index + 1, "file_name": f"{scene.name}_leftImg8bit.png", "height": size[0], "width": size[1]})
        gt_annotations.append({"image_id": index + 1, "file_name": name, "segments_info": gt_segments})
        pred_annotations.append({"image_id": index + 1, "file_name": name, "segments_info": pred_segments})
    write_json_atomic(paths["gt_json"], {"images": images, "annotations": gt_annotations, "categories": categories})
    write_json_atomic(paths["pred_json"], {"annotations": pred_annotations})
    return paths


def panoptic_benchmark(
    workload: str = "large-few",
    n: int | None = None,
    size: tuple[int, int] | None = None,
    workers: int = 2,
    density: float | None = None,
    root: Path | None = None,
    repeat: int = 1,
) -> EvaluatorBenchmark:
    """Time one workload as described in the module docstring; n / size / density override the workload's.
    With repeat > 1 the whole commands and the reference run again, alternating, and each keeps its best."""
    spec = WORKLOADS[workload]
    n, size, density = n or spec.n, size or spec.size, spec.density if density is None else density
    with tempfile.TemporaryDirectory(prefix="alignbench-perf-") as scratch:
        root = Path(root) if root else Path(scratch) / "data"
        log.info("writing %d panoptic benchmark pairs of %dx%d (%s) to %s", n, *size, workload, root)
        paths = write_panoptic_benchmark_pairs(root, n, size, density, prediction=spec.prediction)
        inputs = load_panoptic_inputs(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
        for pair in inputs.pairs:  # warm the page cache so that neither side pays for the disk
            pair.gt_png.read_bytes()
            pair.pred_png.read_bytes()
        files = (paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
        arguments = ["eval", "panoptic", "--gt-json", files[0], "--gt-dir", files[1], "--pred-json", files[2], "--pred-dir", files[3]]
        command_one, command_one_cpu, ours_json = _run_cli(arguments, 1, Path(scratch) / "one.json")
        command_many, _, many_json = _run_cli(arguments, workers, Path(scratch) / "many.json") if workers > 1 else (None, None, None)
        with _OneOpenCVThread():
            floor = _time(lambda: _panoptic_floor(inputs.pairs))
            stages = panoptic_stage_times(inputs)
            in_process = {}
            in_one = _time(lambda: in_process.setdefault(1, evaluate_panoptic_files(*files, workers=1).to_json()))
            in_many = (
                _time(lambda: in_process.setdefault(workers, evaluate_panoptic_files(*files, workers=workers).to_json()))
                if workers > 1 else None
            )
        expected = {}
        reference_time, reference_cpu = _time_with_cpu(lambda: expected.update(cityscapes_panoptic_scores(*files)))
        accumulator_bytes = len(pickle.dumps(evaluate_panoptic_pairs(inputs.categories, inputs.pairs[:1])))
        best = _Best(command_one, command_one_cpu, command_many, reference_time, reference_cpu)
        for _ in range(repeat - 1):
            best.add(
                _run_cli(arguments, 1, Path(scratch) / "one.json")[:2],
                _run_cli(arguments, workers, Path(scratch) / "many.json")[0] if workers > 1 else None,
                _time_with_cpu(lambda: cityscapes_panoptic_scores(*files)),
            )
    runs = [ours_json, *in_process.values()] + ([many_json] if many_json is not None else [])
    return EvaluatorBenchmark(
        evaluator="panoptic",
        workload=workload,
        description=spec.description,
        n_images=n,
        size=tuple(size),
        gt_per_image=sum(len(p.gt_segments) for p in inputs.pairs) / max(n, 1),
        pred_per_image=sum(len(p.pred_segments) for p in inputs.pairs) / max(n, 1),
        floor_s=floor,
        command_one_process_s=best.command_one,
        command_workers_s=best.command_many,
        in_process_one_s=in_one,
        in_process_workers_s=in_many,
        workers=workers,
        reference_s=best.reference,
        max_abs_difference=max(panoptic_difference(run, expected) for run in runs),
        command_one_process_cpu_s=best.command_one_cpu,
        reference_cpu_s=best.reference_cpu,
        repeat=repeat,
        stages_s=stages,
        accumulator_bytes=accumulator_bytes,
    )


def panoptic_stage_times(inputs) -> dict[str, float]:
    """Seconds per stage of our panoptic evaluation over all pairs, one thread: decoding both PNGs to id
    maps, reading segments_info, the joint histogram of runs, and the matching on the list of pairs."""
    accumulator = PanopticAccumulator(inputs.categories)
    totals = dict.fromkeys(("decode 2 PNGs", "segments_info", "joint histogram", "checks and matching"), 0.0)
    for pair in inputs.pairs:
        start = time.perf_counter()
        gt_map, pred_map = read_panoptic_png(pair.gt_png), read_panoptic_png(pair.pred_png)
        decoded = time.perf_counter()
        gt, pred = accumulator._segments("ground truth", pair.gt_segments), accumulator._segments("prediction", pair.pred_segments)
        parsed = time.perf_counter()
        _joint_pairs(gt_map, gt.ids, pred_map, pred.ids)
        counted = time.perf_counter()
        accumulator.update(pred_map, pair.pred_segments, gt_map, pair.gt_segments)  # all of it, again
        end = time.perf_counter()
        totals["decode 2 PNGs"] += decoded - start
        totals["segments_info"] += parsed - decoded
        totals["joint histogram"] += counted - parsed
        totals["checks and matching"] += max(0.0, (end - counted) - (counted - decoded))  # update minus the stages above
    return totals


def _panoptic_floor(pairs) -> None:
    for pair in pairs:
        for path in (pair.gt_png, pair.pred_png):
            cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)


def panoptic_difference(ours, reference: dict) -> float:
    """Largest |ours - reference| over PQ / SQ / RQ of All / Things / Stuff and per class (and n must agree).

    `ours` is a PanopticResult or its `eval panoptic` JSON (NaN as null). The reference reports a skipped
    class (TP + FP + FN = 0) as 0.0 where ours is NaN: those compare equal. Returns inf on any structural
    disagreement.
    """
    if not isinstance(ours, dict):
        ours = ours.to_json()

    def value(number) -> float:
        return math.nan if number is None else float(number)

    worst = 0.0
    for group in ("All", "Things", "Stuff"):
        if ours[group]["n"] != reference[group]["n"]:
            return math.inf
        for key in ("pq", "sq", "rq"):
            worst = max(worst, abs(value(ours[group][key]) - reference[group][key]))
    per_class = {int(category_id): scores for category_id, scores in ours["per_class"].items()}
    if set(per_class) != set(reference["per_class"]):
        return math.inf
    for category_id, scores in per_class.items():
        for key in ("pq", "sq", "rq"):
            mine, theirs = value(scores[key]), reference["per_class"][category_id][key]
            if math.isnan(mine):  # skipped here: the reference reports 0.0
                if theirs != 0.0:
                    return math.inf
            else:
                worst = max(worst, abs(mine - theirs))
    return worst


# --- COCO AP backends -------------------------------------------------------------------------------------


def synthetic_detections(
    gt: dict,
    rng: np.random.Generator,
    with_masks: bool = True,
    miss: float = 0.1,
    duplicates: float = 0.1,
    false_positives: int = 3,
) -> list[dict]:
    """COCO results for a COCO instances dict: every gt object (crowds included) is found with
    probability 1 - `miss` with a jittered box and a shifted mask, sometimes as the wrong class or twice;
    each image also gets `false_positives` random boxes (elliptic masks). Scores are random in (0, 1)."""
    images = {image["id"]: image for image in gt["images"]}
    category_ids = [c["id"] for c in gt["categories"]]
    detections: list[dict] = []

    def add(image: dict, category_id: int, box, score: float, mask: np.ndarray | None) -> None:
        height, width = image["height"], image["width"]
        x0, y0 = float(np.clip(box[0], 0, width - 1)), float(np.clip(box[1], 0, height - 1))
        x1, y1 = float(np.clip(box[0] + box[2], x0 + 1, width)), float(np.clip(box[1] + box[3], y0 + 1, height))
        entry = {"image_id": image["id"], "category_id": int(category_id), "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)}
        if mask is not None:
            entry["segmentation"] = encode_mask(mask)
        detections.append(entry)

    for annotation in gt["annotations"]:
        image = images[annotation["image_id"]]
        copies = 0 if rng.random() < miss else (2 if rng.random() < duplicates else 1)
        for copy in range(copies):
            x, y, w, h = annotation["bbox"]
            spread = 0.08 * (1 + 2 * copy)
            dx, dy = rng.normal(0, spread * w), rng.normal(0, spread * h)
            box = [x + dx, y + dy, w * rng.lognormal(0, spread), h * rng.lognormal(0, spread)]
            category_id = annotation["category_id"] if rng.random() > 0.05 else rng.choice(category_ids)
            mask = None
            if with_masks:
                mask = np.roll(
                    decode_segmentation(annotation["segmentation"], image["height"], image["width"]),
                    (int(round(dy)), int(round(dx))), axis=(0, 1),
                )
            add(image, category_id, box, rng.uniform(0.05, 1.0) / (1 + copy), mask)
    for image in gt["images"]:
        height, width = image["height"], image["width"]
        for _ in range(false_positives):
            w, h = float(rng.uniform(4, width / 4)), float(rng.uniform(4, height / 4))
            x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
            mask = None
            if with_masks:
                mask = np.zeros((height, width), np.uint8)
                cv2.ellipse(mask, (int(x + w / 2), int(y + h / 2)), (max(1, int(w / 2)), max(1, int(h / 2))), 0, 0, 360, 1, -1)
            add(image, rng.choice(category_ids), [x, y, w, h], rng.uniform(0.0, 0.6), mask)
    return detections


def synthetic_coco_ground_truth(n: int, size: tuple[int, int], density: float = 1.0, seed: int = 0) -> dict:
    """A COCO instances dict for N synthetic val scenes (the export's conventions, kept in memory)."""
    categories = instance_categories()
    thing_ids = [c["id"] for c in categories]
    images, annotations = [], []
    for index in range(n):
        scene = generate_scene(seed, "val", index, size, density, render_image=False)
        segment_map, segments = panoptic_from_instance_ids(scene.instance_ids)
        images.append({"id": index + 1, "file_name": f"{scene.name}_leftImg8bit.png", "height": size[0], "width": size[1]})
        annotations += instance_annotations(segment_map, segments, index + 1, thing_ids, len(annotations) + 1)
    return {"images": images, "annotations": annotations, "categories": categories}


@dataclass
class CocoBenchmark:
    n_images: int
    size: tuple[int, int]
    n_annotations: int
    n_detections: int
    times_s: dict  # iou type -> backend -> seconds
    identical_stats: dict  # iou type -> bool (None when faster-coco-eval is absent)
    max_abs_difference: dict  # iou type -> max |stat difference| (None when faster-coco-eval is absent)

    def ratios(self) -> dict:
        return {
            iou_type: times["faster-coco-eval"] / times["pycocotools"]
            for iou_type, times in self.times_s.items()
            if times.get("faster-coco-eval") is not None
        }

    def to_json(self) -> dict:
        return {**asdict(self), "ratios": self.ratios()}

    def report(self) -> str:
        lines = [
            f"COCO AP benchmark: {self.n_images} images {self.size[0]}x{self.size[1]}, "
            f"{self.n_annotations} gt objects, {self.n_detections} detections"
        ]
        ratios = self.ratios()
        for iou_type, times in self.times_s.items():
            faster = times.get("faster-coco-eval")
            lines.append(f"  {iou_type}: pycocotools {times['pycocotools']:7.2f} s")
            if faster is None:
                lines.append(f"  {iou_type}: faster-coco-eval not installed")
            else:
                lines.append(
                    f"  {iou_type}: faster-coco-eval {faster:7.2f} s, ratio faster-coco-eval / pycocotools = "
                    f"{ratios[iou_type]:.3f}; stats bit-identical: {self.identical_stats[iou_type]}, "
                    f"max |difference| {self.max_abs_difference[iou_type]:.1e}"
                )
        return "\n".join(lines)


def coco_benchmark(
    n: int = 50, size: tuple[int, int] = (512, 1024), iou_types: tuple[str, ...] = ("bbox", "segm"), seed: int = 0
) -> CocoBenchmark:
    """Time pycocotools and faster-coco-eval (when installed) on the same synthetic detections."""
    gt = synthetic_coco_ground_truth(n, size, seed=seed)
    detections = synthetic_detections(gt, np.random.default_rng(seed), with_masks="segm" in iou_types)
    times: dict = {}
    identical: dict = {}
    difference: dict = {}
    for iou_type in iou_types:
        results = {}
        times[iou_type] = {}
        for backend in ("pycocotools", "faster-coco-eval"):
            if backend != "pycocotools" and not backend_available(backend):
                times[iou_type][backend] = None
                continue

            evaluate = evaluate_coco if backend == "pycocotools" else faster_coco_eval_for_comparison

            def run(backend=backend, evaluate=evaluate, iou_type=iou_type, results=results):
                results[backend] = evaluate(gt, detections, iou_type)

            times[iou_type][backend] = _time(run)
        faster = results.get("faster-coco-eval")
        identical[iou_type] = None if faster is None else results["pycocotools"].stats == faster.stats
        difference[iou_type] = (
            None if faster is None else float(np.max(np.abs(np.subtract(results["pycocotools"].stats, faster.stats))))
        )
    return CocoBenchmark(n, size, len(gt["annotations"]), len(detections), times, identical, difference)
