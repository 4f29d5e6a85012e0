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

from bench.errors import UserError
from bench.recipes import Budget, TrainConfig

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
    from bench.data.cache import ensure_synthetic
    from bench.data.synthetic import SynthSpec

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

    def training_set(self, config: TrainConfig, seed: int):
        from bench.data.cityscapes import CityscapesDataset
        from bench.train import SemanticTrainingSet, semantic_collate

        return SemanticTrainingSet(CityscapesDataset(self.source.root, "train"), config, seed), semantic_collate

    def evaluate(
        self, model, device: str, budget: Budget, input_size: tuple[int, int] | None = None, progress: bool = False
    ) -> dict:
        from bench.data.cityscapes import find_frames
        from bench.evaluation.loop import evaluate_semantic_model, semantic_metrics

        frames = find_frames(self.source.root, "val")
        if budget.eval_max_images:
            frames = frames[: budget.eval_max_images]
        accumulator = evaluate_semantic_model(
            model, frames, device, input_size=input_size, max_side=budget.eval_max_side, progress=progress
        )
        return semantic_metrics(accumulator.compute())


def task_runner(task: str, source: DataSource):
    """The runner for `task` on `source`."""
    if task == "semantic":
        return SemanticTask(source)
    raise UserError(f"task {task!r} has no harness runner yet")
