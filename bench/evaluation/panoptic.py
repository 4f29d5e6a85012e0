"""Evaluate COCO panoptic prediction files (JSON + PNGs) against panoptic ground truth.

Pairing is by `image_id`, as panopticapi does: every ground-truth annotation needs exactly one prediction
and every prediction a ground-truth annotation. Categories come from the ground-truth JSON (a prediction
JSON's categories, if any, are not used). PNG file names are the annotations' `file_name`s relative to
the given folders. With several workers, chunks of pairs are decoded and accumulated in separate
processes and the partial accumulators merge exactly (metrics.panoptic).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from alignbench.bench import distributed
from alignbench.bench.data.coco import load_json, read_panoptic_png
from alignbench.bench.errors import UserError
from alignbench.bench.evaluation.parallel import accumulate
from alignbench.metrics.panoptic import InvalidPanopticError, PanopticAccumulator, PanopticCategory, PanopticResult
from alignbench.reports.console import percent, text_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PanopticPair:
    """One image: ground-truth and predicted PNGs and segments_info, and where they came from."""

    image_id: Any
    gt_png: Path
    pred_png: Path
    gt_segments: list
    pred_segments: list
    gt_json: Path
    pred_json: Path
    size: tuple[int, int] | None = None  # (height, width) from the ground truth's `images`, if listed


@dataclass(frozen=True)
class PanopticInputs:
    categories: tuple[PanopticCategory, ...]
    pairs: list[PanopticPair]


def _annotations_by_image(path: Path, data: Any, folder: Path) -> dict[Any, Mapping[str, Any]]:
    """Check a panoptic JSON's annotations (image_id, file_name, segments_info) and index them by image."""
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise UserError(f"{path}: expected a COCO panoptic object with an 'annotations' list")
    by_image: dict[Any, Mapping[str, Any]] = {}
    for index, annotation in enumerate(data["annotations"]):
        if not isinstance(annotation, dict) or "image_id" not in annotation:
            raise UserError(f"{path}: annotations[{index}] has no 'image_id'")
        image_id = annotation["image_id"]
        _check_image_id(path, f"annotations[{index}] 'image_id'", image_id)
        if not isinstance(annotation.get("file_name"), str):
            raise UserError(f"{path}: image id {image_id!r}: annotation has no 'file_name'")
        if not isinstance(annotation.get("segments_info"), list):
            raise UserError(f"{path}: image id {image_id!r}: annotation has no 'segments_info' list")
        if image_id in by_image:
            raise UserError(f"{path}: image id {image_id!r} has two annotations")
        png = folder / annotation["file_name"]
        if not png.is_file():
            raise UserError(f"{png}: file not found (image id {image_id!r} in {path})")
        by_image[image_id] = annotation
    return by_image


def _check_image_id(path: Path, field_name: str, image_id: Any) -> None:
    """Image ids pair predictions with ground truth as dict keys: integers or strings (Cityscapes'
    createPanopticImgs writes frame names), nothing else."""
    if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
        raise UserError(f"{path}: {field_name} must be an integer or a string, got {image_id!r}")


def _image_sizes(path: Path, data: dict) -> dict[Any, tuple[int, int]]:
    """(height, width) by image id from the ground truth's optional `images` list, type-checked."""
    images = data.get("images")
    if images is None:
        return {}
    if not isinstance(images, list):
        raise UserError(f"{path}: 'images' is not a list")
    sizes = {}
    for index, image in enumerate(images):
        if not isinstance(image, dict) or "id" not in image:
            raise UserError(f"{path}: images[{index}] has no 'id'")
        _check_image_id(path, f"images[{index}] 'id'", image["id"])
        if "height" not in image and "width" not in image:
            continue
        for key in ("height", "width"):
            value = image.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserError(f"{path}: images[{index}] (image id {image['id']!r}) '{key}' must be a positive integer, got {value!r}")
        sizes[image["id"]] = (image["height"], image["width"])
    return sizes


def _categories(path: Path, data: dict) -> tuple[PanopticCategory, ...]:
    entries = data.get("categories")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: 'categories' is missing or empty")
    categories = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int) or isinstance(entry.get("id"), bool):
            raise UserError(f"{path}: categories[{index}] needs an integer 'id'")
        # cityscapesscripts' average_pq tests `isthing == 1`: anything but 0 / 1 would be read differently
        # by different tools, so it is refused
        if entry.get("isthing", 0) not in (0, 1) or not isinstance(entry.get("isthing", 0), int):
            raise UserError(f"{path}: categories[{index}] 'isthing' must be 0 or 1, got {entry['isthing']!r}")
        categories.append(PanopticCategory.from_coco(entry))
    ids = [c.id for c in categories]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise UserError(f"{path}: category id {duplicates[0]} is listed twice")
    return tuple(categories)


def load_panoptic_inputs(
    gt_json: str | Path, gt_dir: str | Path, pred_json: str | Path, pred_dir: str | Path
) -> PanopticInputs:
    """Read and check both JSON files and pair the annotations by image id (no PNG is decoded)."""
    gt_json, pred_json, gt_dir, pred_dir = Path(gt_json), Path(pred_json), Path(gt_dir), Path(pred_dir)
    for folder, what in ((gt_dir, "ground-truth PNG"), (pred_dir, "prediction PNG")):
        if not folder.is_dir():
            raise UserError(f"{folder}: {what} folder not found")
    gt_data = load_json(gt_json, "ground-truth panoptic JSON")
    pred_data = load_json(pred_json, "prediction panoptic JSON")
    gt_annotations = _annotations_by_image(gt_json, gt_data, gt_dir)
    pred_annotations = _annotations_by_image(pred_json, pred_data, pred_dir)
    categories = _categories(gt_json, gt_data)
    sizes = _image_sizes(gt_json, gt_data)
    pairs = []
    for image_id, gt in gt_annotations.items():
        pred = pred_annotations.get(image_id)
        if pred is None:
            raise UserError(f"{pred_json}: no prediction for image id {image_id!r} (listed in {gt_json})")
        pairs.append(PanopticPair(
            image_id=image_id,
            gt_png=gt_dir / gt["file_name"],
            pred_png=pred_dir / pred["file_name"],
            gt_segments=gt["segments_info"],
            pred_segments=pred["segments_info"],
            gt_json=gt_json,
            pred_json=pred_json,
            size=sizes.get(image_id),
        ))
    stray = [image_id for image_id in pred_annotations if image_id not in gt_annotations]
    if stray:
        raise UserError(f"{pred_json}: image id {stray[0]!r} has no ground truth in {gt_json}")
    if not pairs:
        raise UserError(f"{gt_json}: no annotations to evaluate")
    return PanopticInputs(categories, pairs)


def accumulate_pair(accumulator: PanopticAccumulator, pair: PanopticPair) -> None:
    """Decode one pair's PNGs and add them; bad input becomes a UserError naming the file and image id."""
    gt_map = read_panoptic_png(pair.gt_png)
    pred_map = read_panoptic_png(pair.pred_png)
    if pair.size is not None and gt_map.shape != tuple(pair.size):
        raise UserError(
            f"{pair.gt_png}: size {gt_map.shape[1]}x{gt_map.shape[0]} differs from {pair.gt_json.name}'s "
            f"{pair.size[1]}x{pair.size[0]} for image id {pair.image_id!r}"
        )
    if pred_map.shape != gt_map.shape:
        raise UserError(
            f"{pair.pred_png}: size {pred_map.shape[1]}x{pred_map.shape[0]} differs from ground truth "
            f"{pair.gt_png.name} ({gt_map.shape[1]}x{gt_map.shape[0]}), image id {pair.image_id!r}"
        )
    try:
        accumulator.update(pred_map, pair.pred_segments, gt_map, pair.gt_segments)
    except InvalidPanopticError as error:
        if error.which == "prediction":
            path = pair.pred_png if error.source == "map" else pair.pred_json
        else:
            path = pair.gt_png if error.source == "map" else pair.gt_json
        raise UserError(f"{path}: image id {pair.image_id!r}: {error}") from None


def evaluate_panoptic_pairs(
    categories: Sequence[PanopticCategory], pairs: Sequence[PanopticPair], workers: int = 1, progress: bool = False
) -> PanopticAccumulator:
    """Accumulate all pairs, in this process (workers=1) or in `workers` processes.

    Under torch.distributed each rank accumulates its shard (pair i on rank i % world, with `workers`
    processes of its own) and every rank returns the exact merge of all shards.
    """
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    new_accumulator = partial(PanopticAccumulator, tuple(categories))
    local = accumulate(distributed.shard(pairs), new_accumulator, accumulate_pair, workers, progress)
    return distributed.merge_accumulators(local)


def evaluate_panoptic_files(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
    workers: int = 1,
    progress: bool = False,
) -> PanopticResult:
    """Load, pair, accumulate and score: the whole of `alignbench eval panoptic` except printing."""
    inputs = load_panoptic_inputs(gt_json, gt_dir, pred_json, pred_dir)
    log.info("evaluating %d panoptic images with %d worker(s)", len(inputs.pairs), workers)
    return evaluate_panoptic_pairs(inputs.categories, inputs.pairs, workers, progress).compute()


def panoptic_table(result: PanopticResult) -> str:
    """Per-class PQ / SQ / RQ and the All / Things / Stuff means, in percent with one decimal."""
    rows = []
    for category in result.categories:
        scores = result.per_class[category.id]
        kind = "thing" if category.isthing else "stuff"
        rows.append([f"{category.name} ({category.id})", kind, percent(scores["pq"]), percent(scores["sq"]), percent(scores["rq"])])
    summary_rows = [
        [group, percent(values["pq"]), percent(values["sq"]), percent(values["rq"]), str(values["n"])]
        for group, values in result.summary.items()
    ]
    return "\n\n".join([
        text_table(["category", "kind", "PQ", "SQ", "RQ"], rows),
        text_table(["", "PQ", "SQ", "RQ", "N"], summary_rows),
        f"images: {result.n_images}",
    ])
