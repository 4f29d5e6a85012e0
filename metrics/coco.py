"""COCO detection and instance-segmentation AP through pycocotools' COCOeval.

The scores are COCOeval's own (101 recall points, IoU 0.50:0.95, maxDets 100, area ranges small < 32^2 <
medium < 96^2 < large): AP, AP50, AP75, APs, APm, APl are its first six summary stats. COCOeval reports
-1 for a score with no ground truth (e.g. APl when nothing is large); that becomes NaN here (null in
JSON).

faster-coco-eval is NOT offered as a backend. It would be allowed only if its stats were identical to
pycocotools' on the tests, and they are not always: tests/test_coco_backends.py shows the same matches,
recall and precision curves with one floating-point exception (pycocotools divides by
tp + fp + np.spacing(1), faster-coco-eval by tp + fp, so a curve that starts with a single true positive
starts at 1 - 2^-52 in one and 1.0 in the other), which leaves stats differing by about 1e-16 on some
data. `faster_coco_eval_for_comparison` runs it for that test and for `alignbench perf coco` only.

In memory: `evaluate_coco(gt, detections, iou_type, backend)` with `gt` a COCO instances dict (or a
pycocotools COCO object) and `detections` a COCO results list ({"image_id", "category_id", "score",
"bbox": [x, y, w, h]} plus "segmentation" (RLE) for segm). `detections_to_coco` turns a model's boxes,
scores, labels and masks into that list. Inputs are validated first (`InvalidCocoError`), because
COCOeval fails on bad input with bare assertions or silently wrong numbers. Neither the caller's dicts
nor lists are modified (COCOeval writes into annotations, so shallow copies are evaluated).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
IOU_TYPES = ("bbox", "segm")
BACKENDS = ("pycocotools",)  # what results may come from; see the module docstring for faster-coco-eval


class InvalidCocoError(ValueError):
    """Input COCOeval cannot evaluate. `which` is "ground truth" or "detections"; `image_id` and `index`
    (position of the offending annotation or detection) are set when known."""

    def __init__(self, which: str, message: str, image_id: Any = None, index: int | None = None) -> None:
        super().__init__(message)
        self.which = which
        self.image_id = image_id
        self.index = index


@dataclass
class CocoResult:
    """COCOeval's 12 summary stats (as it reports them, -1 = undefined) and the six named scores."""

    iou_type: str
    backend: str
    stats: tuple[float, ...]
    n_images: int
    n_detections: int
    # COCOeval's per-image matches (metrics.statistics.coco_matches; pycocotools backend only): AP on any
    # resample of the images, for bootstrap intervals
    matches: Any = field(default=None, repr=False, compare=False)

    @property
    def metrics(self) -> dict[str, float]:
        """AP, AP50, AP75, APs, APm, APl as fractions; NaN where COCOeval reports -1."""
        return {name: (math.nan if value < 0 else float(value)) for name, value in zip(METRIC_NAMES, self.stats)}

    def to_json(self) -> dict[str, Any]:
        """The JSON contract of `alignbench eval coco` (README "COCO AP and panoptic quality"), plus the raw stats."""
        return {
            **self.metrics,
            "iou_type": self.iou_type,
            "backend": self.backend,
            "stats": [float(s) for s in self.stats],
            "n_images": self.n_images,
            "n_detections": self.n_detections,
        }


def backend_available(backend: str) -> bool:
    """Whether a backend's package can be imported."""
    module = {"pycocotools": "pycocotools.cocoeval", "faster-coco-eval": "faster_coco_eval"}[backend]
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# --- masks ---------------------------------------------------------------------------------------------


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """HxW binary mask -> compressed RLE {"size": [h, w], "counts": str}, JSON-ready (pycocotools)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) -> compressed RLE (pycocotools)."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):  # polygons: one object may have several parts
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
        return {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    return segmentation


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation -> HxW uint8 mask."""
    import warnings

    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():  # pycocotools 2.0.11's decode trips a NumPy 2 copy-keyword deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(segmentation_to_rle(segmentation, height, width))


def detections_to_coco(
    image_id: Any,
    boxes_xyxy: Any,
    scores: Any,
    category_ids: Any,
    masks: Any = None,
    mask_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """One image's detections (as torchvision's detection models return them) -> COCO results entries.

    `boxes_xyxy` (N, 4) in pixels, `scores` (N,), `category_ids` (N,) COCO category ids (map a model's
    contiguous labels back first), `masks` optional (N, H, W) or (N, 1, H, W) probabilities or binary
    masks, thresholded at `mask_threshold`. numpy arrays or torch tensors.
    """
    boxes = _numpy(boxes_xyxy).reshape(-1, 4).astype(np.float64)
    scores = _numpy(scores).reshape(-1).astype(np.float64)
    category_ids = _numpy(category_ids).reshape(-1)
    if not len(boxes) == len(scores) == len(category_ids):
        raise ValueError(f"boxes, scores and category ids differ in length: {len(boxes)}, {len(scores)}, {len(category_ids)}")
    results = []
    binary = None
    if masks is not None:
        masks = _numpy(masks)
        if masks.ndim == 4:
            masks = masks[:, 0]
        if len(masks) != len(boxes):
            raise ValueError(f"{len(masks)} masks for {len(boxes)} boxes")
        binary = masks > mask_threshold if masks.dtype != np.bool_ else masks
    for k in range(len(boxes)):
        x0, y0, x1, y1 = boxes[k]
        entry = {
            "image_id": image_id,
            "category_id": int(category_ids[k]),
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "score": float(scores[k]),
        }
        if binary is not None:
            entry["segmentation"] = encode_mask(binary[k])
        results.append(entry)
    return results


def _numpy(values: Any) -> np.ndarray:
    if type(values).__module__.startswith("torch"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


# --- validation ----------------------------------------------------------------------------------------


def validate_ground_truth(gt: Mapping[str, Any], iou_type: str | None = None) -> None:
    """Check a COCO instances dict has what COCOeval reads, with the types it needs: images (id, positive
    integer height and width), categories (id), annotations (id, image_id, category_id, a bbox of 4
    numbers with non-negative width and height, a non-negative area, iscrowd 0 or 1; with iou_type "segm"
    also a valid segmentation of the image's size).

    Ids must be integers or strings, and the image (category) ids all of one kind: pycocotools keys dicts
    by them and sorts them. iscrowd other than 0 / 1 is refused: pycocotools is not consistent about it
    (cocoeval.py `_prepare` treats any true value as crowd, `computeIoU` passes int(iscrowd) on, and a
    string "0" would be crowd in one place and not in the other), and cityscapesscripts' panoptic port
    tests `iscrowd == 1`.
    """
    which = "ground truth"
    if not isinstance(gt, Mapping):
        raise InvalidCocoError(which, f"expected a COCO instances object, got {type(gt).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise InvalidCocoError(which, f"'{key}' is missing or not a list")
    sizes: dict[Any, tuple[int, int]] = {}
    for index, image in enumerate(gt["images"]):
        if not isinstance(image, Mapping) or not all(k in image for k in ("id", "height", "width")):
            raise InvalidCocoError(which, f"images[{index}] needs 'id', 'height' and 'width'", index=index)
        _check_id(which, f"images[{index}] 'id'", image["id"], index)
        for key in ("height", "width"):
            if not _is_int(image[key]) or image[key] <= 0:
                raise InvalidCocoError(which, f"images[{index}] '{key}' must be a positive integer, got {image[key]!r}", image["id"], index)
        if image["id"] in sizes:
            raise InvalidCocoError(which, f"image id {image['id']!r} is listed twice", image["id"], index)
        sizes[image["id"]] = (image["height"], image["width"])
    _check_one_kind(which, "image", sizes)
    categories = set()
    for index, category in enumerate(gt["categories"]):
        if not isinstance(category, Mapping) or "id" not in category:
            raise InvalidCocoError(which, f"categories[{index}] has no 'id'", index=index)
        _check_id(which, f"categories[{index}] 'id'", category["id"], index)
        categories.add(category["id"])
    _check_one_kind(which, "category", categories)
    annotation_ids = set()
    for index, annotation in enumerate(gt["annotations"]):
        if not isinstance(annotation, Mapping):
            raise InvalidCocoError(which, f"annotations[{index}] is not an object", index=index)
        missing = [k for k in ("id", "image_id", "category_id", "bbox", "area", "iscrowd") if k not in annotation]
        if missing:
            raise InvalidCocoError(which, f"annotations[{index}] has no {', '.join(missing)}", _hashable(annotation.get("image_id")), index)
        for key in ("id", "image_id", "category_id"):
            _check_id(which, f"annotations[{index}] '{key}'", annotation[key], index)
        image_id = annotation["image_id"]
        if annotation["id"] in annotation_ids:
            raise InvalidCocoError(which, f"annotation id {annotation['id']!r} is listed twice", image_id, index)
        annotation_ids.add(annotation["id"])
        if image_id not in sizes:
            raise InvalidCocoError(
                which, f"annotations[{index}] refers to image id {image_id!r}, which is not in 'images'", image_id, index
            )
        if annotation["category_id"] not in categories:
            raise InvalidCocoError(
                which, f"annotations[{index}] has unknown category id {annotation['category_id']!r}", image_id, index
            )
        _check_box(which, annotation, index)
        if not _is_number(annotation["area"]) or annotation["area"] < 0:
            raise InvalidCocoError(which, f"annotations[{index}] 'area' must be a non-negative number, got {annotation['area']!r}", image_id, index)
        if annotation["iscrowd"] not in (0, 1) or not isinstance(annotation["iscrowd"], (int, np.integer)):
            raise InvalidCocoError(which, f"annotations[{index}] 'iscrowd' must be 0 or 1, got {annotation['iscrowd']!r}", image_id, index)
        if iou_type == "segm":
            if "segmentation" not in annotation:
                raise InvalidCocoError(which, f"annotations[{index}] has no 'segmentation' (needed for segm)", image_id, index)
            _check_segmentation(which, f"annotations[{index}]", annotation["segmentation"], sizes[image_id], image_id, index, polygons=True)


def validate_detections(gt: Mapping[str, Any], detections: Any, iou_type: str) -> None:
    """Check a COCO results list against its (validated) ground truth: known image and category ids, a
    numeric score, a box of 4 numbers with non-negative width and height (bbox, or when given), a valid
    RLE mask of the image's size (segm)."""
    which = "detections"
    if not isinstance(detections, list):
        raise InvalidCocoError(which, f"expected a list of detections, got {type(detections).__name__}")
    sizes = {image["id"]: (image["height"], image["width"]) for image in gt["images"]}
    categories = {category["id"] for category in gt["categories"]}
    for index, detection in enumerate(detections):
        if not isinstance(detection, Mapping):
            raise InvalidCocoError(which, f"detection {index} is not an object", index=index)
        missing = [k for k in ("image_id", "category_id", "score") if k not in detection]
        if missing:
            raise InvalidCocoError(which, f"detection {index} has no {', '.join(missing)}", _hashable(detection.get("image_id")), index)
        image_id = detection["image_id"]
        _check_id(which, f"detection {index} 'image_id'", image_id, index)
        _check_id(which, f"detection {index} 'category_id'", detection["category_id"], index)
        if image_id not in sizes:
            raise InvalidCocoError(which, f"detection {index} has image id {image_id!r}, which is not in the ground truth", image_id, index)
        if detection["category_id"] not in categories:
            raise InvalidCocoError(
                which, f"detection {index} (image id {image_id!r}) has unknown category id {detection['category_id']!r}",
                image_id, index,
            )
        if not _is_number(detection["score"]):
            raise InvalidCocoError(which, f"detection {index} (image id {image_id!r}) has a non-numeric score", image_id, index)
        if iou_type == "bbox" or "bbox" in detection:
            _check_box(which, detection, index)
        if iou_type == "segm":
            segmentation = detection.get("segmentation")
            if not (isinstance(segmentation, Mapping) and "counts" in segmentation and "size" in segmentation):
                raise InvalidCocoError(which, f"detection {index} (image id {image_id!r}) needs an RLE 'segmentation' for segm", image_id, index)
            _check_segmentation(which, f"detection {index} (image id {image_id!r})", segmentation, sizes[image_id], image_id, index)


def _check_id(which: str, field_name: str, value: Any, index: int) -> None:
    if not (_is_int(value) or isinstance(value, str)):
        raise InvalidCocoError(which, f"{field_name} must be an integer or a string, got {value!r}", index=index)


def _check_one_kind(which: str, what: str, ids) -> None:
    kinds = {isinstance(i, str) for i in ids}
    if len(kinds) > 1:
        raise InvalidCocoError(which, f"{what} ids mix integers and strings (pycocotools sorts them)")


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (int, str, np.integer)) else None


def _check_box(which: str, entry: Mapping[str, Any], index: int) -> None:
    box = entry.get("bbox")
    name = "annotations" if which == "ground truth" else "detection"
    image_id = _hashable(entry.get("image_id"))
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_is_number(v) for v in box)):
        raise InvalidCocoError(which, f"{name}[{index}] (image id {image_id!r}) needs a 'bbox' of 4 numbers, got {box!r}", image_id, index)
    if box[2] < 0 or box[3] < 0:
        raise InvalidCocoError(
            which, f"{name}[{index}] (image id {image_id!r}) has a 'bbox' with negative width or height: {list(box)}", image_id, index
        )


def _check_segmentation(
    which: str, where: str, segmentation: Any, size: tuple[int, int], image_id: Any, index: int, polygons: bool = False
) -> None:
    """A segmentation pycocotools can decode safely into a mask of the image's size: polygons (ground truth
    only) as lists of >= 3 (x, y) pairs, or RLE {"size": [h, w], "counts": str or list of counts} whose
    counts cover exactly h * w pixels."""
    if polygons and isinstance(segmentation, list):
        for part in segmentation:
            if not (isinstance(part, list) and len(part) >= 6 and len(part) % 2 == 0 and all(_is_number(v) for v in part)):
                raise InvalidCocoError(which, f"{where} has a polygon that is not a list of >= 3 (x, y) number pairs", image_id, index)
        if not segmentation:
            raise InvalidCocoError(which, f"{where} has an empty polygon list", image_id, index)
        return
    if not (isinstance(segmentation, Mapping) and "counts" in segmentation and "size" in segmentation):
        kind = "polygons or an RLE" if polygons else "an RLE"
        raise InvalidCocoError(which, f"{where} needs {kind} 'segmentation' ({{'size': [h, w], 'counts': ...}})", image_id, index)
    mask_size = segmentation["size"]
    if not (isinstance(mask_size, (list, tuple)) and len(mask_size) == 2 and all(_is_int(v) and v >= 0 for v in mask_size)):
        raise InvalidCocoError(which, f"{where} has an RLE 'size' that is not [height, width], got {mask_size!r}", image_id, index)
    if list(mask_size) != list(size):
        raise InvalidCocoError(
            which, f"{where} has a mask of size {list(mask_size)}, the image is {list(size)} (height, width)", image_id, index
        )
    counts = segmentation["counts"]
    if isinstance(counts, bytes):  # pycocotools' own encode returns bytes
        counts = counts.decode("latin-1")
    if isinstance(counts, str):
        total = _compressed_rle_total(counts)
    elif isinstance(counts, list) and all(_is_int(c) and c >= 0 for c in counts):
        total = sum(counts)
    else:
        raise InvalidCocoError(which, f"{where} has RLE 'counts' that are neither a string nor a list of non-negative integers", image_id, index)
    if total != size[0] * size[1]:
        problem = "is malformed" if total is None else f"covers {total} pixels"
        raise InvalidCocoError(
            which, f"{where} has an RLE mask that {problem}; a {size[0]}x{size[1]} mask has {size[0] * size[1]}", image_id, index
        )


def _compressed_rle_total(counts: str) -> int | None:
    """Sum of the run lengths of a compressed COCO RLE string, or None when a run is negative or cut off.

    Written here because pycocotools only reads such a string by decoding it into an h x w buffer, and
    its decoder (maskApi.c rleDecode) writes past that buffer when the runs add up to more, and reads past
    the string when the last character announces more. The format (maskApi.c rleFrString): each run is
    a little-endian sequence of 5-bit groups in characters offset by 48, bit 0x20 meaning "more
    follows", bit 0x10 of the last group the sign; from the fourth run on, the value is a difference to
    the run two before.
    """
    try:
        codes = np.frombuffer(counts.encode("ascii"), np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        return None
    if not codes.size:
        return 0
    if codes.min() < 0 or codes.max() >= 64 or codes[-1] & 0x20:  # outside the alphabet, or cut off
        return None
    last = np.flatnonzero((codes & 0x20) == 0)  # the last character of each run
    first = np.concatenate(([0], last[:-1] + 1))
    position = np.arange(codes.size) - np.repeat(first, last - first + 1)  # 5-bit group index in its run
    if position.max() > 7:  # more than 40 bits: no run of a real mask (pycocotools keeps 32)
        return None
    groups = (codes & 0x1F) << (5 * position)
    values = np.add.reduceat(groups, first)
    negative = (codes[last] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * (position[last][negative] + 1))
    # runs 0, 1, 2 are stored as they are; run i >= 3 as a difference to run i - 2
    runs = values.copy()
    for parity in (1, 2):
        runs[parity::2] = np.cumsum(values[parity::2])
    if (runs < 0).any():
        return None
    return int(runs.sum())


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


# --- evaluation ----------------------------------------------------------------------------------------


def evaluate_coco(
    gt: Mapping[str, Any] | Any,
    detections: Sequence[Mapping[str, Any]],
    iou_type: str = "bbox",
    backend: str = "pycocotools",
    keep_matches: bool = False,
) -> CocoResult:
    """COCO AP of `detections` against `gt` (a COCO instances dict, or a pycocotools COCO object); with
    `keep_matches` (pycocotools only) the result also holds COCOeval's per-image matches (`matches`)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return _evaluate(gt, detections, iou_type, backend, keep_matches)


def faster_coco_eval_for_comparison(
    gt: Mapping[str, Any] | Any, detections: Sequence[Mapping[str, Any]], iou_type: str = "bbox"
) -> CocoResult:
    """The same evaluation through faster-coco-eval, for speed / agreement comparisons only (not a backend)."""
    return _evaluate(gt, detections, iou_type, "faster-coco-eval")


def _evaluate(gt, detections, iou_type: str, backend: str, keep_matches: bool = False) -> CocoResult:
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    dataset = gt if isinstance(gt, Mapping) else gt.dataset
    validate_ground_truth(dataset, iou_type)
    if backend == "faster-coco-eval":  # it converts image ids with int(), which would rename or fail
        for index, image in enumerate(dataset["images"]):
            if not _is_int(image["id"]):
                raise InvalidCocoError(
                    "ground truth", f"image id {image['id']!r} is not an integer, which faster-coco-eval needs", image["id"], index
                )
    if isinstance(detections, tuple):
        detections = list(detections)
    validate_detections(dataset, detections, iou_type)
    # COCOeval writes into annotations ('ignore', RLE conversion) and loadRes into detections: evaluate copies.
    dataset = {**dataset, "annotations": [dict(a) for a in dataset["annotations"]], "images": [dict(i) for i in dataset["images"]]}
    detections = [dict(d) for d in detections]
    if backend == "pycocotools":
        stats, matches = _run_pycocotools(dataset, detections, iou_type, keep_matches)
    else:
        stats, matches = _run_faster_coco_eval(dataset, detections, iou_type), None
    return CocoResult(iou_type, backend, tuple(float(s) for s in stats[:12]), len(dataset["images"]), len(detections), matches)


def _run_pycocotools(dataset: dict, detections: list[dict], iou_type: str, keep_matches: bool = False) -> tuple[np.ndarray, Any]:
    """COCOeval's stats and, if asked, its per-image matches (metrics.statistics.coco_matches)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from alignbench.metrics.statistics import coco_matches

    output = io.StringIO()
    with contextlib.redirect_stdout(output):  # pycocotools reports progress with print()
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        if detections:
            coco_dt = coco_gt.loadRes(detections)
        else:  # loadRes cannot take an empty list (it reads anns[0]); no detections scores 0
            coco_dt = COCO()
            coco_dt.dataset = {"images": dataset["images"], "categories": dataset["categories"], "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    log.debug("pycocotools output:\n%s", output.getvalue())
    return np.asarray(evaluator.stats), coco_matches(evaluator) if keep_matches else None


def _run_faster_coco_eval(dataset: dict, detections: list[dict], iou_type: str) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    coco_gt = COCO(dataset)
    coco_dt = coco_gt.loadRes(detections)
    evaluator = COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=log.debug)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return np.asarray(evaluator.stats)
