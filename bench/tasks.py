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

import torch

from alignbench.bench.errors import UserError
from alignbench.bench.recipes import Budget, TrainConfig

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

    def supports(self, task: str) -> bool:
        return task in TASKS_OF_KIND[self.kind]


def resolve_data(specs: list[str], progress: bool = False) -> list[DataSource]:
    """'synthetic' (generated into the cache when absent), 'cityscapes=PATH', 'coco=PATH'."""
    from alignbench.bench.data.cache import ensure_synthetic
    from alignbench.bench.data.synthetic import SynthSpec

    sources = []
    for spec in specs:
        kind, _, path = spec.partition("=")
        if kind == "synthetic" and not path:
            synth = SynthSpec()
            root = ensure_synthetic(synth, progress=progress)
            digest = hashlib.sha1(json.dumps(synth.to_json(), sort_keys=True).encode()).hexdigest()[:10]
            sources.append(DataSource("synthetic", root, f"synthetic {synth.size[0]}x{synth.size[1]} "
                                      f"({synth.n_train} train / {synth.n_val} val, seed {synth.seed}, {digest})"))
        elif kind in ("cityscapes", "coco") and path:
            root = Path(path).expanduser().resolve()
            if not root.is_dir():
                raise UserError(f"--data {spec}: folder {root} not found")
            sources.append(DataSource(kind, root, f"{kind} at {root}"))
        else:
            raise UserError(f"--data: expected 'synthetic', 'cityscapes=PATH' or 'coco=PATH', got {spec!r}")
    return sources


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
        from alignbench.bench.data.cityscapes import find_frames
        from alignbench.bench.evaluation.loop import evaluate_semantic_model, semantic_metrics

        frames = find_frames(self.source.root, "val")
        if budget.eval_max_images:
            frames = frames[: budget.eval_max_images]
        accumulator = evaluate_semantic_model(
            model, frames, device, input_size=input_size, max_side=budget.eval_max_side, progress=progress
        )
        return semantic_metrics(accumulator.compute())


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


def _first_images(json_path: Path, limit: int | None, scratch: Path) -> Path:
    """A copy of a COCO JSON restricted to its first `limit` images (the smoke budget's evaluation)."""
    from alignbench.bench.data.coco import load_json
    from alignbench.bench.io import write_json_atomic

    data = load_json(json_path)
    if limit is None or len(data["images"]) <= limit:
        return json_path
    keep = {image["id"] for image in data["images"][:limit]}
    subset = {**data, "images": data["images"][:limit],
              "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}
    path = scratch / f"{json_path.stem}_first{limit}.json"
    write_json_atomic(path, subset)
    return path


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
    """Faster / Mask R-CNN on COCO-format data (the synthetic scenes' export, or a COCO tree): COCO AP."""

    def __init__(self, task: str, source: DataSource) -> None:
        self.task, self.source = task, source

    def _dataset(self, split: str):
        from alignbench.bench.data.coco import CocoDetectionDataset

        files = coco_split(self.source, split)
        return CocoDetectionDataset(files.instances_json, files.image_dir, with_masks=self.task == "instance")

    def build_options(self, config: TrainConfig, budget: Budget | None = None) -> dict:
        categories = self._dataset("val").categories
        # the recipe's image size: torchvision's transform resizes every image to it
        options = {"num_classes": categories.num_classes, "min_size": min(config.crop), "max_size": max(config.crop)}
        return _with_detector_options(options, budget)

    def training_set(self, config: TrainConfig, seed: int):
        return DetectionSet(self._dataset("train"), config, seed), list_collate

    def evaluate(self, model, device: str, budget: Budget, input_size=None, progress: bool = False) -> dict:
        import tempfile

        from alignbench.bench.data.coco import CocoDetectionDataset
        from alignbench.bench.evaluation.detection import evaluate_detector

        files = coco_split(self.source, "val")
        iou_types = ("bbox", "segm") if self.task == "instance" else ("bbox",)
        with tempfile.TemporaryDirectory() as scratch:
            json_path = _first_images(files.instances_json, budget.eval_max_images, Path(scratch))
            dataset = CocoDetectionDataset(json_path, files.image_dir, with_masks=self.task == "instance")
            results = evaluate_detector(model, dataset, iou_types, device=device, progress=progress)
        metrics = {}
        for iou_type, result in results.items():
            metrics.update({f"{name}_{iou_type}": value for name, value in result.metrics.items()})
        return metrics


class PanopticTask:
    """Panoptic FPN on COCO panoptic data: PQ / SQ / RQ (All, Things, Stuff) and the box AP of its instances."""

    task = "panoptic"

    def __init__(self, source: DataSource) -> None:
        self.source = source

    def _dataset(self, split: str):
        from alignbench.bench.data.coco import CocoPanopticDataset

        files = coco_split(self.source, split)
        return CocoPanopticDataset(files.panoptic_json, files.panoptic_dir, files.image_dir)

    def build_options(self, config: TrainConfig, budget: Budget | None = None) -> dict:
        dataset = self._dataset("val")
        options = {"num_classes": dataset.things.num_classes, "num_stuff_classes": dataset.stuff.num_classes,
                   "min_size": min(config.crop), "max_size": max(config.crop)}
        return _with_detector_options(options, budget)

    def training_set(self, config: TrainConfig, seed: int):
        from alignbench.bench.evaluation.detection import panoptic_training_pair

        dataset = self._dataset("train")
        labels = dataset.semantic_labels()
        return DetectionSet(dataset, config, seed, pair=lambda s: panoptic_training_pair(s, dataset.things, labels)), list_collate

    def evaluate(self, model, device: str, budget: Budget, input_size=None, progress: bool = False) -> dict:
        import tempfile

        from alignbench.bench.data.coco import CocoDetectionDataset, CocoPanopticDataset
        from alignbench.bench.evaluation.detection import evaluate_detector, evaluate_panoptic_model

        files = coco_split(self.source, "val")
        with tempfile.TemporaryDirectory() as scratch:
            panoptic_json = _first_images(files.panoptic_json, budget.eval_max_images, Path(scratch))
            result = evaluate_panoptic_model(model, CocoPanopticDataset(panoptic_json, files.panoptic_dir, files.image_dir),
                                             device=device, progress=progress)
            metrics = {"PQ": result.summary["All"]["pq"], "SQ": result.summary["All"]["sq"], "RQ": result.summary["All"]["rq"],
                       "PQ_th": result.summary["Things"]["pq"], "PQ_st": result.summary["Stuff"]["pq"]}
            if files.instances_json.exists():
                instances_json = _first_images(files.instances_json, budget.eval_max_images, Path(scratch))
                boxes = evaluate_detector(model, CocoDetectionDataset(instances_json, files.image_dir, with_masks=False),
                                          ("bbox",), device=device, progress=progress)["bbox"]
                metrics["AP_bbox"] = boxes.metrics["AP"]
        return metrics


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
