"""Evaluate semantic predictions stored as PNG files against a dataset's ground truth (Cityscapes by default).

Predictions are single-channel PNGs anywhere under the prediction folder, matched to ground-truth frames by name:
for Cityscapes <city>_<seq>_<frame>*.png, the pattern cityscapesscripts' getPrediction searches for; for every other
dataset <image stem>.png. Every ground-truth frame needs exactly one prediction and every prediction a ground-truth
frame. With several workers the frames are split into chunks that processes decode and accumulate independently;
the partial accumulators merge exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from alignbench.bench import distributed
from alignbench.bench.data.catalog import SemanticDataset, SemanticFrame
from alignbench.bench.data.cityscapes import CITYSCAPES_DATASET
from alignbench.bench.errors import UserError
from alignbench.bench.evaluation.parallel import accumulate
from alignbench.bench.io import read_png
from alignbench.metrics.boundary import DEFAULT_BANDS
from alignbench.metrics.semantic import InvalidMapError, SemanticAccumulator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalPair:
    """A ground-truth frame and its prediction file."""

    frame: SemanticFrame
    prediction: Path


@dataclass(frozen=True)
class SemanticEvalConfig:
    """How prediction files are scored: the dataset (its label table, label files and native size), the bands,
    what the predictions hold ("label": the dataset's stored label values; "train": train ids 0..C-1 and 255;
    None: the dataset's convention, label ids for Cityscapes, train ids elsewhere) and instance outlines."""

    dataset: SemanticDataset | None = None  # None: Cityscapes
    bands: tuple[int, ...] = DEFAULT_BANDS
    pred_ids: str | None = None
    instance_boundaries: bool = False

    @property
    def data(self) -> SemanticDataset:
        if self.dataset is not None:
            return self.dataset

        return CITYSCAPES_DATASET

    @property
    def prediction_ids(self) -> str:
        return self.pred_ids or self.data.default_pred_ids

    def accumulator(self) -> SemanticAccumulator:
        return SemanticAccumulator(self.data.labels, bands=self.bands, pred_ids=self.prediction_ids,
                                   instance_boundaries=self.instance_boundaries, band_reference_size=self.data.native_size)


def pair_predictions(gt_root: str | Path, pred_dir: str | Path, split: str = "val",
                     dataset: SemanticDataset | None = None) -> list[EvalPair]:
    """Match every ground-truth frame of `split` with exactly one prediction PNG under `pred_dir`."""
    dataset = dataset or SemanticEvalConfig().data
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise UserError(f"{pred_dir}: prediction folder not found")
    frames = dataset.frames(Path(gt_root), split, require_images=False)
    predictions: dict[str, list[Path]] = {}
    for path in sorted(pred_dir.rglob("*.png")):
        predictions.setdefault(dataset.prediction_key(path.name), []).append(path)
    if not predictions:
        raise UserError(f"{pred_dir}: no PNG predictions found")
    pairs = []
    for frame in frames:
        found = predictions.pop(frame.name, [])
        if not found:
            expected = dataset.prediction_pattern.format(name=frame.name)
            raise UserError(f"{frame.label}: no prediction found (expected {expected} under {pred_dir})")
        if len(found) > 1:
            raise UserError(f"{frame.label}: several predictions match: {', '.join(str(p) for p in found)}")
        pairs.append(EvalPair(frame, found[0]))
    if predictions:
        stray = next(iter(predictions.values()))[0]
        raise UserError(f"{stray}: prediction has no ground truth in {dataset.name} split {split!r} under {gt_root}")
    return pairs


def accumulate_pair(config: SemanticEvalConfig, accumulator: SemanticAccumulator, pair: EvalPair) -> None:
    """Decode one pair's PNGs and add them to the accumulator; bad maps become UserErrors naming the file."""
    dataset = config.data
    prediction = read_png(pair.prediction)
    label_ids = dataset.read_label(pair.frame)
    instance_ids = read_png(pair.frame.instances) if pair.frame.instances is not None else None
    if prediction.shape != label_ids.shape:
        raise UserError(
            f"{pair.prediction}: size {prediction.shape[1]}x{prediction.shape[0]} differs from ground truth "
            f"{pair.frame.label.name} ({label_ids.shape[1]}x{label_ids.shape[0]})"
        )
    if config.prediction_ids == "label" and dataset.label_lut is not None:
        prediction = dataset.map_labels(prediction, pair.prediction)  # stored label values -> the table's ids
    try:
        accumulator.update(prediction, label_ids, instance_ids)
    except InvalidMapError as error:
        path = {"prediction": pair.prediction, "ground truth": pair.frame.label}.get(error.which, pair.frame.instances)
        raise UserError(f"{path}: {error}") from None


def evaluate_pairs(
    pairs: Sequence[EvalPair], config: SemanticEvalConfig, workers: int = 1, progress: bool = False
) -> SemanticAccumulator:
    """Accumulate all pairs, in this process (workers=1) or in `workers` processes.

    Under torch.distributed each rank accumulates its shard (pair i on rank i % world, with `workers`
    processes of its own) and every rank returns the exact merge of all shards.
    """
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    local = accumulate(distributed.shard(pairs), config.accumulator, partial(accumulate_pair, config), workers, progress)
    return distributed.merge_accumulators(local)


def evaluate_semantic_files(
    gt_root: str | Path,
    pred_dir: str | Path,
    split: str = "val",
    config: SemanticEvalConfig = SemanticEvalConfig(),
    workers: int = 1,
    progress: bool = False,
):
    """Pair, accumulate and score: the whole of `alignbench eval semantic` except printing."""
    pairs = pair_predictions(gt_root, pred_dir, split, config.data)
    log.info("evaluating %d images with %d worker(s)", len(pairs), workers)
    return evaluate_pairs(pairs, config, workers, progress).compute()
