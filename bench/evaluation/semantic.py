"""Evaluate semantic predictions stored as PNG files against a Cityscapes ground-truth tree.

Predictions are single-channel PNGs named <city>_<seq>_<frame>*.png anywhere under the prediction folder,
the pattern cityscapesscripts' getPrediction searches for. Every ground-truth frame needs exactly one
prediction and every prediction a ground-truth frame. With several workers the frames are split into
chunks that processes decode and accumulate independently; the partial accumulators merge exactly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alignbench.bench.data.cityscapes import CityscapesFrame, find_frames
from alignbench.bench.errors import UserError
from alignbench.bench.evaluation.parallel import accumulate
from alignbench.bench.io import read_png
from alignbench.metrics.boundary import DEFAULT_BANDS
from alignbench.metrics.semantic import InvalidMapError, SemanticAccumulator

log = logging.getLogger(__name__)

_FRAME_KEY = re.compile(r"^([^_/]+_\d+_\d+)")


@dataclass(frozen=True)
class EvalPair:
    """A ground-truth frame and its prediction file."""

    frame: CityscapesFrame
    prediction: Path


@dataclass(frozen=True)
class SemanticEvalConfig:
    bands: tuple[int, ...] = DEFAULT_BANDS
    pred_ids: str = "label"
    instance_boundaries: bool = False

    def accumulator(self) -> SemanticAccumulator:
        return SemanticAccumulator(bands=self.bands, pred_ids=self.pred_ids, instance_boundaries=self.instance_boundaries)


def pair_predictions(gt_root: str | Path, pred_dir: str | Path, split: str = "val") -> list[EvalPair]:
    """Match every ground-truth frame of `split` with exactly one prediction PNG under `pred_dir`."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise UserError(f"{pred_dir}: prediction folder not found")
    frames = find_frames(gt_root, split, require_images=False)
    predictions: dict[str, list[Path]] = {}
    for path in sorted(pred_dir.rglob("*.png")):
        match = _FRAME_KEY.match(path.name)
        key = match.group(1) if match else path.name
        predictions.setdefault(key, []).append(path)
    if not predictions:
        raise UserError(f"{pred_dir}: no PNG predictions found")
    pairs = []
    for frame in frames:
        found = predictions.pop(frame.name, [])
        if not found:
            raise UserError(f"{frame.label_ids}: no prediction found (expected {frame.name}*.png under {pred_dir})")
        if len(found) > 1:
            raise UserError(f"{frame.label_ids}: several predictions match: {', '.join(str(p) for p in found)}")
        pairs.append(EvalPair(frame, found[0]))
    if predictions:
        stray = next(iter(predictions.values()))[0]
        raise UserError(f"{stray}: prediction has no ground truth in {Path(gt_root) / 'gtFine' / split}")
    return pairs


def accumulate_pair(accumulator: SemanticAccumulator, pair: EvalPair) -> None:
    """Decode one pair's PNGs and add them to the accumulator; bad maps become UserErrors naming the file."""
    prediction = read_png(pair.prediction)
    label_ids = read_png(pair.frame.label_ids)
    instance_ids = read_png(pair.frame.instance_ids)
    if prediction.shape != label_ids.shape:
        raise UserError(
            f"{pair.prediction}: size {prediction.shape[1]}x{prediction.shape[0]} differs from ground truth "
            f"{pair.frame.label_ids.name} ({label_ids.shape[1]}x{label_ids.shape[0]})"
        )
    try:
        accumulator.update(prediction, label_ids, instance_ids)
    except InvalidMapError as error:
        path = {"prediction": pair.prediction, "ground truth": pair.frame.label_ids}.get(
            error.which, pair.frame.instance_ids
        )
        raise UserError(f"{path}: {error}") from None


def evaluate_pairs(
    pairs: Sequence[EvalPair], config: SemanticEvalConfig, workers: int = 1, progress: bool = False
) -> SemanticAccumulator:
    """Accumulate all pairs, in this process (workers=1) or in `workers` processes.

    Under torch.distributed each rank accumulates its shard (pair i on rank i % world, with `workers`
    processes of its own) and every rank returns the exact merge of all shards.
    """
    from alignbench.bench import distributed

    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    local = accumulate(distributed.shard(pairs), config.accumulator, accumulate_pair, workers, progress)
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
    pairs = pair_predictions(gt_root, pred_dir, split)
    log.info("evaluating %d images with %d worker(s)", len(pairs), workers)
    return evaluate_pairs(pairs, config, workers, progress).compute()
