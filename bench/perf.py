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

from alignbench.bench.baselines import coarse_prediction
from alignbench.bench.data.synthetic import generate_scene, write_scene
from alignbench.bench.evaluation.semantic import SemanticEvalConfig, evaluate_pairs, pair_predictions
from alignbench.bench.io import read_png, write_png
from alignbench.metrics.boundary import boundary_mask, distance_to_boundary
from alignbench.metrics.labels import CITYSCAPES

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
    from alignbench.bench.reference import cityscapes_semantic_reference

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


# --- panoptic quality -------------------------------------------------------------------------------------
#
# `panoptic_benchmark`: N full-size scenes are written once as COCO panoptic ground truth (the synthetic
# instanceIds through bench.data.coco, createPanopticImgs' conventions) and perturbed predictions; then
# (a) alignbench's PQ evaluator (one process with one OpenCV thread, and --workers N) and (b)
# cityscapesscripts' pq_compute_single_core (its single-process path) run over the same files. The floor
# is decoding the two PNGs of every pair (OpenCV, one thread), which any evaluator of these files pays.


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


def write_panoptic_benchmark_pairs(
    root: Path, n: int, size: tuple[int, int], density: float = 1.0, seed: int = 0
) -> dict[str, Path]:
    """Write N synthetic panoptic ground-truth / prediction pairs (PNGs + JSON) under `root`."""
    from alignbench.bench.data.coco import panoptic_categories, panoptic_from_instance_ids, write_panoptic_png
    from alignbench.bench.io import write_json_atomic

    paths = {"gt_json": root / "gt.json", "gt_dir": root / "gt", "pred_json": root / "pred.json", "pred_dir": root / "pred"}
    categories = panoptic_categories()
    rng = np.random.default_rng(seed)
    images, gt_annotations, pred_annotations = [], [], []
    for index in range(n):
        scene = generate_scene(seed, "val", index, size, density, render_image=False)
        gt_map, gt_segments = panoptic_from_instance_ids(scene.instance_ids)
        pred_map, pred_segments = perturbed_panoptic_prediction(gt_map, gt_segments, categories, rng)
        name = f"{scene.name}_panoptic.png"
        write_panoptic_png(paths["gt_dir"] / name, gt_map)
        write_panoptic_png(paths["pred_dir"] / name, pred_map)
        images.append({"id": index + 1, "file_name": f"{scene.name}_leftImg8bit.png", "height": size[0], "width": size[1]})
        gt_annotations.append({"image_id": index + 1, "file_name": name, "segments_info": gt_segments})
        pred_annotations.append({"image_id": index + 1, "file_name": name, "segments_info": pred_segments})
    write_json_atomic(paths["gt_json"], {"images": images, "annotations": gt_annotations, "categories": categories})
    write_json_atomic(paths["pred_json"], {"annotations": pred_annotations})
    return paths


@dataclass
class PanopticBenchmark:
    n_images: int
    size: tuple[int, int]
    segments_per_image: float
    floor_s: float
    decode_to_ids_s: float
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
        per_image = 1000.0 / max(self.n_images, 1)
        lines = [
            f"panoptic quality benchmark: {self.n_images} image pairs {self.size[0]}x{self.size[1]}, "
            f"{self.segments_per_image:.1f} gt segments per image",
            f"  floor: decode the 2 PNGs of each pair (OpenCV, 1 thread): {self.floor_s:8.2f} s "
            f"({self.floor_s * per_image:.0f} ms/image)",
            f"  profile: decoding both PNGs to id maps (read_panoptic_png) takes {self.decode_to_ids_s:.2f} s of (a); "
            f"JSON, checks, lookups, joint histogram and matching the other "
            f"{self.ours_one_process_s - self.decode_to_ids_s:.2f} s",
            f"  (a) alignbench, 1 process, 1 OpenCV thread: {self.ours_one_process_s:8.2f} s "
            f"({self.ours_one_process_s * per_image:.0f} ms/image, {self.ours_one_process_s / self.floor_s:.2f}x the floor)",
        ]
        if self.ours_workers_s is not None:
            lines.append(f"  (a) alignbench, --workers {self.workers}: {self.ours_workers_s:8.2f} s")
        lines += [
            f"  (b) cityscapesscripts pq_compute_single_core: {self.reference_s:8.2f} s "
            f"({self.reference_s * per_image:.0f} ms/image)",
            f"  ratio (a)/(b), 1 process: {self.ratio_one_process:.3f}  (target <= 1.0)",
        ]
        if self.ratio_workers is not None:
            lines.append(f"  ratio (a)/(b), --workers {self.workers}: {self.ratio_workers:.3f}  (target <= 0.6)")
        lines.append(f"  agreement: max |ours - reference| over PQ / SQ / RQ (All, Things, Stuff, per class) = {self.max_abs_difference:.2e}")
        return "\n".join(lines)


def panoptic_benchmark(
    n: int = 20,
    size: tuple[int, int] = (1024, 2048),
    workers: int = 2,
    density: float = 1.0,
    root: Path | None = None,
) -> PanopticBenchmark:
    """Run the comparison described above and return its figures."""
    from alignbench.bench.evaluation.panoptic import evaluate_panoptic_files, load_panoptic_inputs
    from alignbench.bench.reference import cityscapes_panoptic_scores

    with tempfile.TemporaryDirectory(prefix="alignbench-perf-") as scratch:
        root = Path(root) if root else Path(scratch)
        log.info("writing %d panoptic benchmark pairs of %dx%d to %s", n, *size, root)
        paths = write_panoptic_benchmark_pairs(root, n, size, density)
        inputs = load_panoptic_inputs(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
        for pair in inputs.pairs:  # warm the page cache so that neither side pays for the disk
            pair.gt_png.read_bytes()
            pair.pred_png.read_bytes()
        arguments = (paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            floor = _time(lambda: _panoptic_floor(inputs.pairs))
            decode_to_ids = _time(lambda: _panoptic_decode_to_ids(inputs.pairs))
            ours = None

            def run_ours():
                nonlocal ours
                ours = evaluate_panoptic_files(*arguments, workers=1)

            ours_one = _time(run_ours)
            ours_many = _time(lambda: evaluate_panoptic_files(*arguments, workers=workers)) if workers > 1 else None
        finally:
            cv2.setNumThreads(threads)
        expected = None

        def run_reference():
            nonlocal expected
            expected = cityscapes_panoptic_scores(*arguments)

        reference_time = _time(run_reference)
    return PanopticBenchmark(
        n_images=n,
        size=size,
        segments_per_image=sum(len(p.gt_segments) for p in inputs.pairs) / max(n, 1),
        floor_s=floor,
        decode_to_ids_s=decode_to_ids,
        ours_one_process_s=ours_one,
        ours_workers_s=ours_many,
        workers=workers,
        reference_s=reference_time,
        max_abs_difference=panoptic_difference(ours, expected),
    )


def _panoptic_floor(pairs) -> None:
    for pair in pairs:
        for path in (pair.gt_png, pair.pred_png):
            cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)


def _panoptic_decode_to_ids(pairs) -> None:
    from alignbench.bench.data.coco import read_panoptic_png

    for pair in pairs:  # one pair alive at a time, as in the evaluator
        read_panoptic_png(pair.gt_png)
        read_panoptic_png(pair.pred_png)


def panoptic_difference(ours, reference: dict) -> float:
    """Largest |ours - reference| over PQ / SQ / RQ of All / Things / Stuff and per class (and n must agree).

    The reference reports a skipped class (TP + FP + FN = 0) as 0.0 where ours is NaN: those compare
    equal. Returns inf on any structural disagreement.
    """
    worst = 0.0
    for group in ("All", "Things", "Stuff"):
        if ours.summary[group]["n"] != reference[group]["n"]:
            return math.inf
        for key in ("pq", "sq", "rq"):
            worst = max(worst, abs(ours.summary[group][key] - reference[group][key]))
    if set(ours.per_class) != set(reference["per_class"]):
        return math.inf
    for category_id, scores in ours.per_class.items():
        skipped = scores["tp"] + scores["fp"] + scores["fn"] == 0
        for key in ("pq", "sq", "rq"):
            theirs = reference["per_class"][category_id][key]
            if skipped:
                if theirs != 0.0:
                    return math.inf
            else:
                worst = max(worst, abs(scores[key] - theirs))
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
    from alignbench.metrics.coco import decode_segmentation, encode_mask

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
    from alignbench.bench.data.coco import instance_annotations, instance_categories, panoptic_from_instance_ids

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
    from alignbench.metrics.coco import backend_available, evaluate_coco, faster_coco_eval_for_comparison

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
