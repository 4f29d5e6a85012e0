"""Data sources and the task runners: per task, how to draw training batches from a data source and how to
evaluate a model on its evaluation split.

A data source is one copy of a registered dataset (bench.data.catalog: Cityscapes, CamVid, ADE20K, ..., the
built-in synthetic scenes, or a dataset file of the user's), resolved from a `--data` value by `resolve_data`. A
task runner is registered per task name (alignbench.tasks.TASKS) with `register_task`; `task_runner(task, source)`
makes the one for a source. No table of data kinds: a dataset says which tasks it serves.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alignbench.bench.data.cache import ensure_synthetic
from alignbench.bench.data.catalog import Dataset, SemanticSplit, get_dataset
from alignbench.bench.data.coco import CocoDetectionDataset, CocoPanopticDataset, load_json
from alignbench.bench.data.folder import load_dataset_file
from alignbench.bench.data.synthetic import SYNTHETIC_PRESETS
from alignbench.bench.errors import UserError
from alignbench.bench.evaluation.detection import compute_on_main, panoptic_training_pair
from alignbench.bench.evaluation.loop import (
    STATISTICS_KEY,
    CocoEvaluator,
    PanopticEvaluator,
    SemanticEvaluator,
    detector_predictor,
    run_inference,
    semantic_predictor,
)
from alignbench.bench.recipes import Budget, TrainConfig
from alignbench.bench.train import SemanticTrainingSet, semantic_collate
from alignbench.metrics import vocabulary
from alignbench.tasks import TASKS


@dataclass(frozen=True)
class DataSource:
    """One copy of a dataset on disk: `description` names it in provenance (dataset, folder, ground-truth
    fingerprint); `spec` is the `--data` value that names it again (e.g. "synthetic-miniature", "camvid=/abs/path")."""

    dataset: Dataset
    root: Path
    description: str
    spec: str = ""

    def supports(self, task: str) -> bool:
        return task in self.dataset.tasks


def resolve_data(specs: list[str], progress: bool = False) -> list[DataSource]:
    """`--data` values: a synthetic preset by name (bench.data.synthetic.SYNTHETIC_PRESETS: 'synthetic',
    'synthetic-miniature'; generated into the cache when absent), 'NAME=PATH' for a registered dataset
    (`alignbench datasets`), or a dataset file 'FILE.yaml' / 'FILE.yaml=ROOT' (bench.data.folder)."""
    sources = []
    for spec in specs:
        name, _, path = spec.partition("=")
        if name in SYNTHETIC_PRESETS and not path:
            sources.append(_synthetic_source(name, progress))
            continue
        if name.endswith((".yaml", ".yml")):
            dataset = load_dataset_file(name)
            root = Path(path).expanduser().resolve() if path else dataset.default_root
        else:
            try:
                dataset = get_dataset(name)
            except UserError:
                presets = ", ".join(f"'{preset}'" for preset in SYNTHETIC_PRESETS)
                raise UserError(f"--data {spec}: expected {presets}, 'NAME=PATH' for a dataset of `alignbench datasets` "
                                f"or a dataset file 'FILE.yaml[=ROOT]'") from None
            if not path:
                raise UserError(f"--data {spec}: give the folder of your copy, {name}=PATH ({dataset.layout})")
            root = Path(path).expanduser().resolve()
        if not root.is_dir():
            raise UserError(f"--data {spec}: folder {root} not found")
        sources.append(DataSource(dataset, root, f"{dataset.name} at {root} ({dataset.fingerprint(root)})", f"{name}={root}"))
    return sources


def _synthetic_source(preset: str, progress: bool) -> DataSource:
    synth = SYNTHETIC_PRESETS[preset]
    root = ensure_synthetic(synth, progress=progress)
    digest = hashlib.sha1(json.dumps(synth.to_json(), sort_keys=True).encode()).hexdigest()[:10]
    return DataSource(get_dataset("synthetic"), root, f"synthetic {synth.size[0]}x{synth.size[1]} "
                      f"({synth.n_train} train / {synth.n_val} val, seed {synth.seed}, {digest})", preset)


# --- the task registry ------------------------------------------------------------------------------------

_RUNNERS: dict[str, type[TaskRunner]] = {}


def register_task(name: str):
    """Class decorator: the runner of task `name` (one of alignbench.tasks.TASKS)."""
    def add(runner: type[TaskRunner]) -> type[TaskRunner]:
        if name not in TASKS:
            raise ValueError(f"task {name!r}: not one of {', '.join(TASKS)}")
        if name in _RUNNERS:
            raise ValueError(f"task {name!r} already has a runner")
        _RUNNERS[name] = runner
        return runner

    return add


def task_runner(task: str, source: DataSource, eval_split: str = "val") -> TaskRunner:
    """The runner for `task` on `source`, evaluating `eval_split`."""
    if task not in _RUNNERS:
        raise UserError(f"unknown task {task!r}")
    if not source.supports(task):
        raise UserError(f"--data {source.spec or source.root}: {source.dataset.name} has no {task} data "
                        f"(its tasks: {', '.join(source.dataset.tasks)})")
    return _RUNNERS[task](task, source, eval_split)


def default_recipe(task: str) -> str:
    """The recipe of a model that no built-in suite runs (a composed or plugin model): its task runner's."""
    return _RUNNERS[task].default_recipe


class TaskRunner:
    """How one task trains on and evaluates a data source: the builder keywords the data imply, the training set,
    the evaluation of the eval split (vocabulary keys, plus per-image statistics under STATISTICS_KEY)."""

    default_recipe = ""  # FaPN's schedule of the task: the setting the composed scaffolds (models.scaffolds) come from

    def __init__(self, task: str, source: DataSource, eval_split: str = "val") -> None:
        self.task, self.source, self.eval_split = task, source, eval_split

    def build_options(self, config: TrainConfig, budget: Budget | None = None) -> dict:
        raise NotImplementedError

    def training_set(self, config: TrainConfig, seed: int):
        raise NotImplementedError

    def evaluate(self, model, device: str, budget: Budget, input_size: tuple[int, int] | None = None, progress: bool = False) -> dict:
        raise NotImplementedError


@register_task("semantic")
class SemanticTask(TaskRunner):
    """Semantic segmentation on any semantic dataset: train ids for training, the dataset's label table for scores
    (Cityscapes' rules on its classes; iIoU and category scores where the table defines them), boundary bands
    stated at the dataset's native size."""

    default_recipe = "fapn_semantic"

    def __init__(self, task: str, source: DataSource, eval_split: str = "val") -> None:
        super().__init__(task, source, eval_split)
        self._class_weights: dict[str, list[float]] = {}
        # the split to evaluate must be there before anything trains (a listing: no image is read)
        source.dataset.frames(source.root, eval_split, require_images=False)

    def build_options(self, config: TrainConfig, budget: Budget | None = None) -> dict:
        """The class count of the dataset's label table, and the loss's class weights when the recipe asks."""
        options: dict = {"num_classes": self.source.dataset.labels.num_train_ids}
        if config.class_weighting != "none":
            if config.class_weighting not in self._class_weights:
                self._class_weights[config.class_weighting] = class_weights(self.source, config.class_weighting)
            options["class_weights"] = self._class_weights[config.class_weighting]
        return options

    def training_set(self, config: TrainConfig, seed: int):
        dataset, root = self.source.dataset, self.source.root
        return SemanticTrainingSet(SemanticSplit.of(dataset, root, dataset.training_split(root)), config, seed), semantic_collate

    def evaluate(
        self, model, device: str, budget: Budget, input_size: tuple[int, int] | None = None, progress: bool = False
    ) -> dict:
        """The vocabulary's semantic and boundary-band metrics on the eval split (the budget's first images,
        downscaled to its longest side), plus per-class IoU for the figures, the bands' pixel shares and the
        image count."""
        dataset = self.source.dataset
        frames = dataset.frames(self.source.root, self.eval_split)
        if budget.eval_max_images:
            frames = frames[: budget.eval_max_images]
        evaluator = SemanticEvaluator(dataset.labels, band_reference_size=dataset.native_size)
        run_inference(model, SemanticSplit(dataset, frames), semantic_predictor(input_size, budget.eval_max_side), [evaluator],
                      device, progress)
        return {**semantic_metrics(evaluator.compute()), STATISTICS_KEY: evaluator.statistics()}


CLASS_WEIGHTINGS = ("none", "sqrt_median_frequency")


def class_weights(source: DataSource, weighting: str) -> list[float]:
    """Loss weights per class from the training split's labels (rounded to 6 digits: part of the model's identity).

    "sqrt_median_frequency": the square root of median frequency balancing (Eigen & Fergus, ICCV 2015, which SegNet
    uses on CamVid): a class's frequency is its pixels over the pixels of the images it appears in, its weight
    median(frequencies) / frequency; the square root halves the spread in log terms, so that the rarest classes
    (poles, bicyclists) are not weighted 10-40 times the largest. A class absent from the split gets weight 1."""
    if weighting not in CLASS_WEIGHTINGS:
        raise UserError(f"class_weighting: expected one of {', '.join(CLASS_WEIGHTINGS)}, got {weighting!r}")
    dataset = source.dataset
    count = dataset.labels.num_train_ids
    pixels, present_in = np.zeros(count, np.float64), np.zeros(count, np.float64)
    for frame in dataset.frames(source.root, dataset.training_split(source.root), require_images=False):
        train_ids = dataset.labels.train_id_of[dataset.read_label(frame)]
        histogram = np.bincount(train_ids.ravel(), minlength=256)[:count]
        pixels += histogram
        present_in += (histogram > 0) * train_ids.size
    seen = pixels > 0
    frequency = np.divide(pixels, present_in, out=np.zeros(count), where=seen)
    weights = np.ones(count)
    weights[seen] = np.sqrt(np.median(frequency[seen]) / frequency[seen])
    return [round(float(w), 6) for w in weights]


def semantic_metrics(result) -> dict:
    """A metrics.semantic.SemanticResult as vocabulary keys (through its `eval semantic` JSON), plus `class_IoU`
    (for the per-class figures), `classes` (their train-id order), `band_share` and `band_width_px` (each band's
    share of the evaluated pixels and the widths it had on the maps, which the report prints beside the band
    scores) and `n_images`."""
    output = result.to_json()
    outputs = {"semantic": output, "boundary": output}
    # the scores this dataset defines (no iIoU or category scores without instance classes and categories)
    keys = [key for key in vocabulary.task_metrics("semantic") if vocabulary.defined_in(outputs, key)]
    metrics = vocabulary.extract(outputs, keys)
    return {**metrics, "class_IoU": dict(result.class_iou), "classes": list(result.class_iou),
            "band_share": output["boundary_pixel_share"], "band_width_px": output["boundary_width_px"], "n_images": result.n_images}


def first_images(dataset, limit: int | None):
    """A shallow copy of a CocoDetectionDataset or CocoPanopticDataset restricted, in memory, to the first
    `limit` images of its JSON (the smoke budget's evaluation); the dataset itself when it has no more."""
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


@register_task("detection")
@register_task("instance")
class DetectionTask(TaskRunner):
    """Faster / Mask R-CNN on COCO-format data (the synthetic scenes' export, or a COCO tree): COCO AP.

    The eval split is read once: its categories give the model's class count and it is then evaluated.
    """

    default_recipe = "fapn_detection"

    def __init__(self, task: str, source: DataSource, eval_split: str = "val") -> None:
        super().__init__(task, source, eval_split)
        self._val = None

    def _dataset(self, split: str):
        files = self.source.dataset.coco_files(self.source.root, split)
        return CocoDetectionDataset(files.instances_json, files.image_dir, with_masks=self.task == "instance")

    def val(self):
        """The eval split (its name is `eval_split`; `val` is what it usually is)."""
        if self._val is None:
            self._val = self._dataset(self.eval_split)
        return self._val

    def build_options(self, config: TrainConfig, budget: Budget | None = None) -> dict:
        # the recipe's image size: torchvision's transform resizes every image to it
        options = {"num_classes": self.val().categories.num_classes, "min_size": min(config.crop), "max_size": max(config.crop)}
        return _with_detector_options(options, budget)

    def training_set(self, config: TrainConfig, seed: int):
        return DetectionSet(self._dataset("train"), config, seed), list_collate

    def evaluate(self, model, device: str, budget: Budget, input_size=None, progress: bool = False) -> dict:
        """Box (and, for instance segmentation, mask) AP on the val split (the budget's first images)."""
        dataset = first_images(self.val(), budget.eval_max_images)
        iou_types = ("bbox", "segm") if self.task == "instance" else ("bbox",)
        (evaluator,) = run_inference(model, dataset, detector_predictor, [CocoEvaluator(dataset.data, dataset.categories, iou_types)],
                                     device, progress, "detection eval")
        results = compute_on_main(evaluator)
        outputs = {"coco": {iou_type: result.to_json() for iou_type, result in results.items()}}
        metrics = vocabulary.extract(outputs, vocabulary.task_metrics(self.task))
        return {**metrics, STATISTICS_KEY: {"kind": np.array("coco"), **evaluator.statistics()}} if results else metrics


@register_task("panoptic")
class PanopticTask(TaskRunner):
    """Panoptic FPN on COCO panoptic data: PQ / SQ / RQ (All, Things, Stuff) and the box AP of its instances,
    both from one inference pass over the eval split (read once, also for the model's class counts)."""

    default_recipe = "fapn_detection"

    def __init__(self, task: str, source: DataSource, eval_split: str = "val") -> None:
        super().__init__(task, source, eval_split)
        self._val = None

    def _dataset(self, split: str):
        files = self.source.dataset.coco_files(self.source.root, split)
        return CocoPanopticDataset(files.panoptic_json, files.panoptic_dir, files.image_dir)

    def val(self):
        """The eval split."""
        if self._val is None:
            self._val = self._dataset(self.eval_split)
        return self._val

    def build_options(self, config: TrainConfig, budget: Budget | None = None) -> dict:
        dataset = self.val()
        options = {"num_classes": dataset.things.num_classes, "num_stuff_classes": dataset.stuff.num_classes,
                   "min_size": min(config.crop), "max_size": max(config.crop)}
        return _with_detector_options(options, budget)

    def training_set(self, config: TrainConfig, seed: int):
        dataset = self._dataset("train")
        labels = dataset.semantic_labels()
        return DetectionSet(dataset, config, seed, pair=lambda s: panoptic_training_pair(s, dataset.things, labels)), list_collate

    def evaluate(self, model, device: str, budget: Budget, input_size=None, progress: bool = False) -> dict:
        """PQ, SQ, RQ, PQ (things / stuff) and, when the split has an instances JSON, box AP against it."""
        dataset = first_images(self.val(), budget.eval_max_images)
        evaluators = [PanopticEvaluator(dataset)]
        instances_json = self.source.dataset.coco_files(self.source.root, self.eval_split).instances_json
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
