"""Data sources and per-task training / evaluation, as the harness sees them.

A data source is the built-in synthetic data (every task: the Cityscapes tree plus its COCO export), a
Cityscapes tree (semantic) or a COCO tree (detection, instance, panoptic). A task runner knows how to
draw training batches from a source and how to evaluate a model on its validation split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alignbench.bench.errors import UserError
from alignbench.bench.recipes import Budget, TrainConfig
from alignbench.metrics import vocabulary

TASKS_OF_KIND = {
    "synthetic": ("semantic", "detection", "instance", "panoptic"),
    "cityscapes": ("semantic",),
    "coco": ("detection", "instance", "panoptic"),
}


@dataclass(frozen=True)
class DataSource:
    kind: str  # synthetic | cityscapes | coco
    root: Path
    description: str  # provenance: what the numbers were measured on
    spec: str = ""  # the `--data` value that names it again (e.g. "synthetic-miniature", "cityscapes=/abs/path")

    def supports(self, task: str) -> bool:
        return task in TASKS_OF_KIND[self.kind]


def resolve_data(specs: list[str], progress: bool = False) -> list[DataSource]:
    """A synthetic preset by name (bench.data.synthetic.SYNTHETIC_PRESETS: 'synthetic', 'synthetic-miniature';
    generated into the cache when absent), 'cityscapes=PATH' or 'coco=PATH'."""
    from alignbench.bench.data.cache import ensure_synthetic
    from alignbench.bench.data.synthetic import SYNTHETIC_PRESETS

    sources = []
    for spec in specs:
        kind, _, path = spec.partition("=")
        if kind in SYNTHETIC_PRESETS and not path:
            synth = SYNTHETIC_PRESETS[kind]
            root = ensure_synthetic(synth, progress=progress)
            digest = hashlib.sha1(json.dumps(synth.to_json(), sort_keys=True).encode()).hexdigest()[:10]
            sources.append(DataSource("synthetic", root, f"synthetic {synth.size[0]}x{synth.size[1]} "
                                      f"({synth.n_train} train / {synth.n_val} val, seed {synth.seed}, {digest})", kind))
        elif kind in ("cityscapes", "coco") and path:
            root = Path(path).expanduser().resolve()
            if not root.is_dir():
                raise UserError(f"--data {spec}: folder {root} not found")
            sources.append(DataSource(kind, root, f"{kind} at {root} ({ground_truth_fingerprint(kind, root)})", f"{kind}={root}"))
        else:
            presets = ", ".join(f"'{name}'" for name in SYNTHETIC_PRESETS)
            raise UserError(f"--data: expected {presets}, 'cityscapes=PATH' or 'coco=PATH', got {spec!r}")
    return sources


def ground_truth_fingerprint(kind: str, root: Path) -> str:
    """A short digest of a data tree's ground truth (relative path and size of every file under gtFine/ for
    Cityscapes, annotations/ for COCO): results and checkpoints keyed by it are not reused for other data."""
    folder = root / ("gtFine" if kind == "cityscapes" else "annotations")
    files = sorted((path.relative_to(root).as_posix(), path.stat().st_size) for path in folder.rglob("*") if path.is_file())
    return hashlib.sha1(json.dumps(files).encode()).hexdigest()[:10]


class SemanticTask:
    """Cityscapes-layout semantic segmentation: train ids for training, the Cityscapes evaluator for scores."""

    task = "semantic"

    def __init__(self, source: DataSource) -> None:
        self.source = source

    def build_options(self, config: TrainConfig, budget: Budget | None = None) -> dict:
        """Builder keywords for the task's data, the recipe's image size and the budget."""
        return {}

    def training_set(self, config: TrainConfig, seed: int):
        from alignbench.bench.data.cityscapes import CityscapesDataset
        from alignbench.bench.train import SemanticTrainingSet, semantic_collate

        return SemanticTrainingSet(CityscapesDataset(self.source.root, "train"), config, seed), semantic_collate

    def evaluate(
        self, model, device: str, budget: Budget, input_size: tuple[int, int] | None = None, progress: bool = False
    ) -> dict:
        """The vocabulary's semantic and boundary-band metrics on the val split (the budget's first images,
        downscaled to its longest side), plus per-class IoU for the figures and the image count."""
        from alignbench.bench.data.cityscapes import find_frames
        from alignbench.bench.evaluation.loop import STATISTICS_KEY, FrameDataset, SemanticEvaluator, run_inference, semantic_predictor

        frames = find_frames(self.source.root, "val")
        if budget.eval_max_images:
            frames = frames[: budget.eval_max_images]
        (evaluator,) = run_inference(model, FrameDataset(frames), semantic_predictor(input_size, budget.eval_max_side),
                                     [SemanticEvaluator()], device, progress)
        return {**semantic_metrics(evaluator.compute()), STATISTICS_KEY: evaluator.statistics()}


def semantic_metrics(result) -> dict:
    """A metrics.semantic.SemanticResult as vocabulary keys (through its `eval semantic` JSON), plus
    `class_IoU` (for the per-class figures) and `n_images`."""
    output = result.to_json()
    metrics = vocabulary.extract({"semantic": output, "boundary": output}, vocabulary.task_metrics("semantic"))
    return {**metrics, "class_IoU": dict(result.class_iou), "n_images": result.n_images}


@dataclass(frozen=True)
class CocoSplit:
    """The COCO files of one split: instances JSON, panoptic JSON and PNG folder, image folder."""

    instances_json: Path
    panoptic_json: Path
    panoptic_dir: Path
    image_dir: Path


def coco_split(source: DataSource, split: str) -> CocoSplit:
    """COCO files of a split: exported once from the synthetic tree, or a COCO tree's own
    (annotations/{instances,panoptic}_<split>.json, annotations/panoptic_<split>/, <split>/ images;
    "train" / "val" also find COCO's train2017 / val2017)."""
    if source.kind == "synthetic":
        from alignbench.bench.data.coco import coco_paths, export_coco

        out = source.root / "coco"
        paths = coco_paths(out, split)
        if not paths["panoptic_json"].exists():
            export_coco(source.root, out, split)
        return CocoSplit(paths["instances_json"], paths["panoptic_json"], paths["panoptic_dir"],
                         source.root / "leftImg8bit" / split)
    for name in (split, f"{split}2017"):
        annotations = source.root / "annotations"
        if (annotations / f"instances_{name}.json").exists() or (annotations / f"panoptic_{name}.json").exists():
            return CocoSplit(annotations / f"instances_{name}.json", annotations / f"panoptic_{name}.json",
                             annotations / f"panoptic_{name}", source.root / name)
    raise UserError(f"{source.root}: no annotations/instances_{split}.json or panoptic_{split}.json (COCO layout)")


def first_images(dataset, limit: int | None):
    """A shallow copy of a CocoDetectionDataset or CocoPanopticDataset restricted, in memory, to the first
    `limit` images of its JSON (the smoke budget's evaluation); the dataset itself when it has no more."""
    import copy

    images = dataset.data["images"]
    if limit is None or len(images) <= limit:
        return dataset
    keep = {image["id"] for image in images[:limit]}
    subset = copy.copy(dataset)
    subset.data = {**dataset.data, "images": images[:limit],
                   "annotations": [a for a in dataset.data["annotations"] if a["image_id"] in keep]}
    if isinstance(dataset.images, dict):  # CocoPanopticDataset: images by id, one annotation per image
        subset.images = {image_id: info for image_id, info in dataset.images.items() if image_id in keep}
        subset.annotations = [a for a in dataset.annotations if a["image_id"] in keep]
    else:  # CocoDetectionDataset: the image list it iterates
        subset.images = list(images[:limit])
    return subset


def ground_truth_of(data: dict, image_ids) -> dict:
    """A COCO instances JSON (as loaded) restricted to `image_ids`, in memory."""
    keep = set(image_ids)
    return {**data, "images": [image for image in data["images"] if image["id"] in keep],
            "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}


class DetectionSet(torch.utils.data.Dataset):
    """Sample k of a detection run: a random training image, flipped with probability 1/2, from seed (seed, k)."""

    def __init__(self, dataset, config: TrainConfig, seed: int, pair=None) -> None:
        self.dataset, self.config, self.seed, self.pair = dataset, config, seed, pair

    def __len__(self) -> int:
        return self.config.iterations * self.config.batch_size

    def __getitem__(self, k: int):
        import numpy as np

        rng = np.random.default_rng([self.seed, k])
        sample = self.dataset[int(rng.integers(len(self.dataset)))]
        image, target = self.pair(sample) if self.pair else sample.to_torch()
        if self.config.flip and rng.random() < 0.5:
            image, target = flip_horizontally(image, target)
        return image, target


def flip_horizontally(image, target: dict):
    """Mirror an image and its boxes / masks / semantic map left to right."""
    width = image.shape[-1]
    image = image.flip(-1)
    target = dict(target)
    if "boxes" in target and len(target["boxes"]):
        boxes = target["boxes"].clone()
        boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
        target["boxes"] = boxes
    for key in ("masks", "semantic"):
        if key in target:
            target[key] = target[key].flip(-1)
    return image, target


def list_collate(items):
    images, targets = zip(*items)
    return list(images), list(targets)


class DetectionTask:
    """Faster / Mask R-CNN on COCO-format data (the synthetic scenes' export, or a COCO tree): COCO AP.

    The val split is read once: its categories give the model's class count and it is then evaluated.
    """

    def __init__(self, task: str, source: DataSource) -> None:
        self.task, self.source = task, source
        self._val = None

    def _dataset(self, split: str):
        from alignbench.bench.data.coco import CocoDetectionDataset

        files = coco_split(self.source, split)
        return CocoDetectionDataset(files.instances_json, files.image_dir, with_masks=self.task == "instance")

    def val(self):
        if self._val is None:
            self._val = self._dataset("val")
        return self._val

    def build_options(self, config: TrainConfig, budget: Budget | None = None) -> dict:
        # the recipe's image size: torchvision's transform resizes every image to it
        options = {"num_classes": self.val().categories.num_classes, "min_size": min(config.crop), "max_size": max(config.crop)}
        return _with_detector_options(options, budget)

    def training_set(self, config: TrainConfig, seed: int):
        return DetectionSet(self._dataset("train"), config, seed), list_collate

    def evaluate(self, model, device: str, budget: Budget, input_size=None, progress: bool = False) -> dict:
        """Box (and, for instance segmentation, mask) AP on the val split (the budget's first images)."""
        from alignbench.bench.evaluation.detection import compute_on_main
        from alignbench.bench.evaluation.loop import STATISTICS_KEY, CocoEvaluator, detector_predictor, run_inference

        dataset = first_images(self.val(), budget.eval_max_images)
        iou_types = ("bbox", "segm") if self.task == "instance" else ("bbox",)
        (evaluator,) = run_inference(model, dataset, detector_predictor, [CocoEvaluator(dataset.data, dataset.categories, iou_types)],
                                     device, progress, "detection eval")
        results = compute_on_main(evaluator)
        outputs = {"coco": {iou_type: result.to_json() for iou_type, result in results.items()}}
        metrics = vocabulary.extract(outputs, vocabulary.task_metrics(self.task))
        return {**metrics, STATISTICS_KEY: {"kind": np.array("coco"), **evaluator.statistics()}} if results else metrics


class PanopticTask:
    """Panoptic FPN on COCO panoptic data: PQ / SQ / RQ (All, Things, Stuff) and the box AP of its instances,
    both from one inference pass over the val split (read once, also for the model's class counts)."""

    task = "panoptic"

    def __init__(self, source: DataSource) -> None:
        self.source = source
        self._val = None

    def _dataset(self, split: str):
        from alignbench.bench.data.coco import CocoPanopticDataset

        files = coco_split(self.source, split)
        return CocoPanopticDataset(files.panoptic_json, files.panoptic_dir, files.image_dir)

    def val(self):
        if self._val is None:
            self._val = self._dataset("val")
        return self._val

    def build_options(self, config: TrainConfig, budget: Budget | None = None) -> dict:
        dataset = self.val()
        options = {"num_classes": dataset.things.num_classes, "num_stuff_classes": dataset.stuff.num_classes,
                   "min_size": min(config.crop), "max_size": max(config.crop)}
        return _with_detector_options(options, budget)

    def training_set(self, config: TrainConfig, seed: int):
        from alignbench.bench.evaluation.detection import panoptic_training_pair

        dataset = self._dataset("train")
        labels = dataset.semantic_labels()
        return DetectionSet(dataset, config, seed, pair=lambda s: panoptic_training_pair(s, dataset.things, labels)), list_collate

    def evaluate(self, model, device: str, budget: Budget, input_size=None, progress: bool = False) -> dict:
        """PQ, SQ, RQ, PQ (things / stuff) and, when the split has an instances JSON, box AP against it."""
        from alignbench.bench.data.coco import load_json
        from alignbench.bench.evaluation.detection import compute_on_main
        from alignbench.bench.evaluation.loop import STATISTICS_KEY, CocoEvaluator, PanopticEvaluator, detector_predictor, run_inference

        dataset = first_images(self.val(), budget.eval_max_images)
        evaluators = [PanopticEvaluator(dataset)]
        instances_json = coco_split(self.source, "val").instances_json
        if instances_json.exists():
            ground_truth = ground_truth_of(load_json(instances_json, "COCO instances JSON"), dataset.images)
            evaluators.append(CocoEvaluator(ground_truth, dataset.things, ("bbox",)))
        evaluators = run_inference(model, dataset, detector_predictor, evaluators, device, progress, "panoptic eval")
        outputs = {"panoptic": evaluators[0].compute().to_json()}
        statistics = evaluators[0].statistics()
        if len(evaluators) > 1:
            boxes = compute_on_main(evaluators[1])
            outputs["coco"] = {"bbox": boxes["bbox"].to_json()}
            if boxes:
                statistics.update({key: value for key, value in evaluators[1].statistics().items() if key != "index"})
        return {**vocabulary.extract(outputs, vocabulary.task_metrics("panoptic")), STATISTICS_KEY: statistics}


def _with_detector_options(options: dict, budget: Budget | None) -> dict:
    """`options` plus the budget's R-CNN sampling keywords, if it has any."""
    if budget is not None and budget.detector_options:
        options["rcnn_options"] = dict(budget.detector_options)
    return options


def task_runner(task: str, source: DataSource):
    """The runner for `task` on `source`."""
    if task == "semantic":
        return SemanticTask(source)
    if task in ("detection", "instance"):
        return DetectionTask(task, source)
    if task == "panoptic":
        return PanopticTask(source)
    raise UserError(f"unknown task {task!r}")
