"""COCO-format export of a Cityscapes-layout tree, and readers for COCO instances / panoptic trees.

Export (`export_coco`, `alignbench data coco`) follows the conventions of cityscapesscripts'
preparation/createPanopticImgs.py, reading only gtFine *_instanceIds.png:

* An instanceIds value v >= 1000 is instance v % 1000 of label v // 1000; v < 1000 is the bare label id,
  a stuff region or, for a class with instances, a crowd region (iscrowd = 1).
* Labels with ignoreInEval are left out: their pixels are VOID (id 0) in the panoptic PNG.
* Panoptic segment id = the instanceIds value, stored as colour id = R + 256 G + 256^2 B; categories are
  the 19 evaluated labels with their Cityscapes label ids, isthing = hasInstances; segments_info has id,
  category_id, area, bbox [x, y, w, h] and iscrowd, sorted by id.
* Instances JSON: the thing segments (the 8 evaluated classes with instances, crowd regions included
  with iscrowd = 1), each with a compressed RLE mask (pycocotools), its bbox and pixel area.

Files written under OUT: annotations/instances_<split>.json, annotations/panoptic_<split>.json and
annotations/panoptic_<split>/<frame>_gtFine_panoptic.png (COCO 2017's names). They are written into a staging
folder and swapped into annotations/ at the end, the panoptic JSON last (bench.io.staged_folder): an interrupted
export leaves the previous files as they were and no partial file, and a panoptic JSON is only ever beside the
complete files of its export (bench.tasks takes it as the mark of a finished export). Images are not copied:
`file_name` is relative to the tree's leftImg8bit/<split>/ folder, which is recorded in `info`. Image ids
are integers 1..N in frame-name order (pycocotools, faster-coco-eval and torchvision expect integers;
createPanopticImgs uses the frame name, kept here as `frame`).

Readers (`CocoDetectionDataset`, `CocoPanopticDataset`) are map-style datasets over a real COCO tree or
an exported one. They import no torch; `DetectionSample.to_torch()` builds torchvision-style inputs.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from alignbench.bench.data.catalog import Dataset, register_dataset
from alignbench.bench.data.cityscapes import IMAGE_SUFFIX, find_frames
from alignbench.bench.data.images import image_to_tensor
from alignbench.bench.errors import UserError
from alignbench.bench.io import json_text, parse_png_header, read_image, read_png, staged_folder, write_png
from alignbench.metrics.coco import InvalidCocoError, decode_segmentation, encode_mask, validate_ground_truth
from alignbench.metrics.labels import CITYSCAPES, LabelSpec
from alignbench.metrics.panoptic import id_to_rgb

log = logging.getLogger(__name__)

_INSTANCE_OFFSET = 1000  # Cityscapes instanceIds: label_id * 1000 + k for instances


# --- categories ----------------------------------------------------------------------------------------


def panoptic_categories(spec: LabelSpec = CITYSCAPES) -> list[dict[str, Any]]:
    """The evaluated labels as COCO panoptic categories (id = Cityscapes label id), in label-id order."""
    return [
        {
            "id": int(label_id),
            "name": spec.names[label_id],
            "supercategory": spec.category_of[label_id],
            "isthing": int(spec.has_instances[label_id]),
            "color": [int(c) for c in spec.colors[label_id]],
        }
        for label_id in spec.evaluated_ids
    ]


def instance_categories(spec: LabelSpec = CITYSCAPES) -> list[dict[str, Any]]:
    """The evaluated labels with instances (the 8 Cityscapes thing classes) as COCO categories."""
    return [category for category in panoptic_categories(spec) if category["isthing"]]


@dataclass(frozen=True)
class CategoryTable:
    """COCO categories and the contiguous labels models use: label k + 1 is the k-th id in id order.

    Label 0 is left for the background, as torchvision's detection models expect.
    """

    categories: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_coco(cls, categories: Sequence[Mapping[str, Any]]) -> CategoryTable:
        return cls(tuple(sorted(categories, key=lambda c: c["id"])))

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(int(c["id"]) for c in self.categories)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(str(c.get("name", c["id"])) for c in self.categories)

    @property
    def num_classes(self) -> int:
        """Number of categories (a detector needs num_classes + 1 outputs with the background)."""
        return len(self.categories)

    def labels_of(self, category_ids: Any) -> np.ndarray:
        """COCO category ids -> contiguous labels 1..K (int64)."""
        ids = np.asarray(self.ids)
        category_ids = np.asarray(category_ids, dtype=np.int64).reshape(-1)
        positions = np.searchsorted(ids, category_ids)
        if category_ids.size and (positions.max() >= len(ids) or not np.array_equal(ids[np.minimum(positions, len(ids) - 1)], category_ids)):
            raise ValueError(f"unknown category ids in {category_ids.tolist()}")
        return positions.astype(np.int64) + 1

    def category_ids_of(self, labels: Any) -> np.ndarray:
        """Contiguous labels 1..K -> COCO category ids (int64), e.g. to write a model's detections."""
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if labels.size and (labels.min() < 1 or labels.max() > self.num_classes):
            raise ValueError(f"labels must be in 1..{self.num_classes}, got {labels.tolist()}")
        return np.asarray(self.ids, dtype=np.int64)[labels - 1]


# --- Cityscapes instanceIds -> COCO ---------------------------------------------------------------------


def panoptic_from_instance_ids(
    instance_ids: np.ndarray, spec: LabelSpec = CITYSCAPES
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A Cityscapes instanceIds map -> (int32 segment-id map, segments_info), as createPanopticImgs does.

    Raises ValueError for a value whose label id is outside the table.
    """
    from scipy import ndimage  # here: scipy loads only to convert instanceIds, not for the eval commands that read COCO files

    values = np.asarray(instance_ids)
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"expected a 2-D integer instanceIds map, got {values.dtype} {values.shape}")
    values = values.astype(np.int32)
    if values.size and int(values.min()) < 0:
        raise ValueError(f"instanceIds value {int(values.min())} is negative")
    label_ids = np.where(values < _INSTANCE_OFFSET, values, values // _INSTANCE_OFFSET)
    if label_ids.size and int(label_ids.max()) >= spec.num_ids:
        bad = int(values[label_ids >= spec.num_ids].flat[0])
        label_id = bad if bad < _INSTANCE_OFFSET else bad // _INSTANCE_OFFSET
        raise ValueError(f"instanceIds value {bad} has label id {label_id} outside 0..{spec.num_ids - 1}")
    segment_map = np.where(spec.evaluated[label_ids], values, 0).astype(np.int32)
    areas = np.bincount(segment_map.ravel())
    boxes = ndimage.find_objects(segment_map)  # one pass: the bounding slices of every id
    segments = []
    for segment_id in np.flatnonzero(areas[1:]) + 1:
        rows, columns = boxes[segment_id - 1]
        label_id = int(segment_id if segment_id < _INSTANCE_OFFSET else segment_id // _INSTANCE_OFFSET)
        segments.append({
            "id": int(segment_id),
            "category_id": label_id,
            "area": int(areas[segment_id]),
            "bbox": [columns.start, rows.start, columns.stop - columns.start, rows.stop - rows.start],
            "iscrowd": int(segment_id < _INSTANCE_OFFSET and bool(spec.has_instances[label_id])),
        })
    return segment_map, segments


def instance_annotations(
    segment_map: np.ndarray,
    segments: Sequence[Mapping[str, Any]],
    image_id: int,
    thing_ids: Sequence[int],
    first_annotation_id: int = 1,
) -> list[dict[str, Any]]:
    """COCO instance annotations (RLE masks) for the thing segments of one panoptic map."""
    things = set(int(i) for i in thing_ids)
    annotations = []
    for segment in segments:
        if segment["category_id"] not in things:
            continue
        annotations.append({
            "id": first_annotation_id + len(annotations),
            "image_id": image_id,
            "category_id": int(segment["category_id"]),
            "segmentation": encode_mask(segment_map == segment["id"]),
            "area": int(segment["area"]),
            "bbox": [float(v) for v in segment["bbox"]],
            "iscrowd": int(segment["iscrowd"]),
        })
    return annotations


@dataclass(frozen=True)
class CocoExport:
    """Where one split's COCO files went, and what they hold."""

    split: str
    instances_json: Path
    panoptic_json: Path
    panoptic_dir: Path
    image_dir: Path
    n_images: int
    n_instances: int
    n_segments: int


def coco_paths(out: str | Path, split: str) -> dict[str, Path]:
    """The files `export_coco` writes for a split."""
    annotations = Path(out) / "annotations"
    return {
        "instances_json": annotations / f"instances_{split}.json",
        "panoptic_json": annotations / f"panoptic_{split}.json",
        "panoptic_dir": annotations / f"panoptic_{split}",
    }


def export_coco(root: str | Path, out: str | Path, split: str = "val", progress: bool = False) -> CocoExport:
    """Write COCO instances and panoptic annotations for one split of a Cityscapes-layout tree (staged: module
    docstring)."""
    from tqdm import tqdm  # here: only an export shows a bar (the eval commands import this module)

    root = Path(root)
    frames = find_frames(root, split, require_images=False)
    paths = coco_paths(out, split)
    image_dir = root / "leftImg8bit" / split
    thing_ids = [c["id"] for c in instance_categories()]
    images, panoptic_annotations, instances = [], [], []
    n_segments = 0
    with staged_folder(paths["panoptic_json"].parent, last=paths["panoptic_json"].name) as staging:
        for image_id, frame in enumerate(tqdm(frames, desc=f"COCO export {split}", unit="img", disable=not progress), start=1):
            instance_ids = read_png(frame.instances)
            try:
                segment_map, segments = panoptic_from_instance_ids(instance_ids)
            except ValueError as error:
                raise UserError(f"{frame.instances}: {error}") from None
            height, width = segment_map.shape
            png_name = f"{frame.name}_gtFine_panoptic.png"
            write_panoptic_png(staging / paths["panoptic_dir"].name / png_name, segment_map)
            images.append({
                "id": image_id,
                "file_name": f"{frame.city}/{frame.name}{IMAGE_SUFFIX}",
                "height": height,
                "width": width,
                "frame": frame.name,
            })
            panoptic_annotations.append({"image_id": image_id, "file_name": png_name, "segments_info": segments})
            instances += instance_annotations(segment_map, segments, image_id, thing_ids, len(instances) + 1)
            n_segments += len(segments)
        info = {
            "description": f"Cityscapes-layout tree {root} ({split}) in COCO format, by alignbench",
            "image_dir": str(image_dir.resolve()),
        }
        (staging / paths["instances_json"].name).write_text(json_text(
            {"info": info, "images": images, "annotations": instances, "categories": instance_categories()}), encoding="utf-8")
        (staging / paths["panoptic_json"].name).write_text(json_text(
            {"info": info, "images": images, "annotations": panoptic_annotations, "categories": panoptic_categories()}), encoding="utf-8")
    log.info("COCO export of %s/%s: %d images, %d instances, %d segments", root, split, len(images), len(instances), n_segments)
    return CocoExport(split, paths["instances_json"], paths["panoptic_json"], paths["panoptic_dir"], image_dir,
                      len(images), len(instances), n_segments)


# --- files ---------------------------------------------------------------------------------------------


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """A COCO panoptic PNG (8-bit RGB or RGBA) -> HxW int32 segment ids, id = R + 256 G + 256^2 B.

    OpenCV decodes (a little faster than Pillow); one channel shuffle into 4-byte pixels gives the ids
    through a uint32 view, several times faster than three int32 products over the image.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a PNG file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from None
    header = parse_png_header(data, path)
    if header.color_type not in (2, 6) or header.bit_depth != 8:
        raise UserError(f"{path}: expected an 8-bit RGB panoptic PNG, found {header.kind} with {header.bit_depth}-bit samples")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.shape[:2] != (header.height, header.width) or decoded.ndim != 3:
        raise UserError(f"{path}: corrupt PNG data (decoding failed)")
    # R, G, B into bytes 0, 1, 2 of a zeroed 4-byte pixel (one pass): the pixel read as a little-endian
    # uint32 is then R + 256 G + 256^2 B
    rgb0 = np.zeros(decoded.shape[:2] + (4,), np.uint8)
    cv2.mixChannels([decoded], [rgb0], [2, 0, 1, 1, 0, 2])
    return rgb0.view("<u4")[..., 0].view(np.int32)


def write_panoptic_png(path: str | Path, segment_map: np.ndarray) -> None:
    """Write an HxW segment-id map as a COCO panoptic RGB PNG."""
    write_png(path, id_to_rgb(segment_map))


def load_json(path: str | Path, what: str = "JSON") -> Any:
    """Parse a JSON file; a missing or malformed file becomes one UserError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a {what} file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read ({getattr(error, 'strerror', None) or error})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: malformed JSON ({error.msg} at line {error.lineno} column {error.colno})") from None


def _require_folder(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: {what} folder not found")
    return path


# --- readers -------------------------------------------------------------------------------------------


@dataclass
class DetectionSample:
    """One image with its instances, as detection / instance-segmentation models train on them.

    `boxes` (N, 4) float32 x0, y0, x1, y1 in pixels; `labels` contiguous 1..K (see CategoryTable);
    `category_ids` the COCO ids; `masks` (N, H, W) uint8 or None; `iscrowd` (N,) bool; `area` (N,).
    """

    image_id: Any
    file_name: str
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    category_ids: np.ndarray
    masks: np.ndarray | None
    iscrowd: np.ndarray
    area: np.ndarray

    def to_torch(self):
        """(image float32 CxHxW in [0, 1], target dict) in the form torchvision's detection models take:
        target keys boxes, labels, masks (when present), image_id, area, iscrowd."""
        import torch  # here: the readers import no torch (module docstring); only this conversion needs it

        image = image_to_tensor(self.image)
        target = {
            "boxes": torch.from_numpy(self.boxes.astype(np.float32)).reshape(-1, 4),
            "labels": torch.from_numpy(self.labels.astype(np.int64)),
            "image_id": self.image_id,
            "area": torch.from_numpy(self.area.astype(np.float32)),
            "iscrowd": torch.from_numpy(self.iscrowd.astype(np.int64)),
        }
        if self.masks is not None:
            target["masks"] = torch.from_numpy(self.masks)
        return image, target


class CocoDetectionDataset:
    """Map-style dataset over a COCO instances JSON and its image folder (no torch import).

    Args:
        annotation_file: COCO instances JSON.
        image_dir: folder the images' `file_name`s are relative to.
        include_crowd: keep iscrowd annotations (default False: detectors train on non-crowd objects,
            as detectron2 and torchvision's references do; COCOeval handles crowds from the JSON itself).
        with_masks: decode masks (pycocotools) for instance segmentation.
        transform: applied to each DetectionSample, whose result is returned instead.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: str | Path,
        include_crowd: bool = False,
        with_masks: bool = True,
        transform: Callable[[DetectionSample], Any] | None = None,
    ) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_dir = _require_folder(image_dir, "image")
        self.data = load_json(self.annotation_file, "COCO instances JSON")
        try:
            validate_ground_truth(self.data)
        except InvalidCocoError as error:
            raise UserError(f"{self.annotation_file}: {error}") from None
        self.images = list(self.data["images"])
        self.categories = CategoryTable.from_coco(self.data["categories"])
        self._annotations: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
        for annotation in self.data["annotations"]:
            if include_crowd or not annotation.get("iscrowd", 0):
                self._annotations[annotation["image_id"]].append(annotation)
        self.include_crowd = include_crowd
        self.with_masks = with_masks
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_ids(self) -> list[Any]:
        return [image["id"] for image in self.images]

    def __getitem__(self, index: int):
        info = self.images[index]
        image = read_image(self.image_dir / info["file_name"])
        height, width = image.shape[:2]
        if (height, width) != (info["height"], info["width"]):
            raise UserError(
                f"{self.image_dir / info['file_name']}: size {width}x{height} differs from {self.annotation_file} "
                f"({info['width']}x{info['height']}), image id {info['id']!r}"
            )
        annotations = self._annotations.get(info["id"], [])
        n = len(annotations)
        boxes = np.array([a["bbox"] for a in annotations], np.float32).reshape(n, 4)
        boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> x0, y0, x1, y1
        category_ids = np.array([a["category_id"] for a in annotations], np.int64)
        masks = None
        if self.with_masks:
            masks = np.zeros((n, height, width), np.uint8)
            for k, annotation in enumerate(annotations):
                masks[k] = decode_segmentation(annotation["segmentation"], height, width)
        sample = DetectionSample(
            image_id=info["id"],
            file_name=info["file_name"],
            image=image,
            boxes=boxes,
            labels=self.categories.labels_of(category_ids),
            category_ids=category_ids,
            masks=masks,
            iscrowd=np.array([bool(a.get("iscrowd", 0)) for a in annotations], bool),
            area=np.array([a["area"] for a in annotations], np.float64),
        )
        return self.transform(sample) if self.transform else sample


@dataclass
class PanopticSample:
    """One image with its panoptic ground truth: `segment_map` (HxW int32 ids, 0 = VOID) and
    `segments_info` (COCO dicts). `image` is None when the dataset has no image folder."""

    image_id: Any
    image: np.ndarray | None
    segment_map: np.ndarray
    segments_info: list[dict[str, Any]]
    thing_ids: frozenset[int] = field(default_factory=frozenset)

    def semantic_map(self, label_of_category: Mapping[int, int], ignore_label: int = 255) -> np.ndarray:
        """uint8 HxW map: each segment's pixels get label_of_category[category_id]; VOID and unmapped
        categories get `ignore_label`."""
        ids = np.array([0] + [s["id"] for s in self.segments_info], np.int64)
        labels = np.array(
            [ignore_label] + [label_of_category.get(s["category_id"], ignore_label) for s in self.segments_info], np.uint8
        )
        order = np.argsort(ids)
        position = np.searchsorted(ids[order], self.segment_map)
        position = np.minimum(position, len(ids) - 1)
        known = ids[order][position] == self.segment_map
        return np.where(known, labels[order][position], ignore_label).astype(np.uint8)

    def thing_instances(self, include_crowd: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(boxes (N, 4) float32 xyxy, category_ids (N,), masks (N, H, W) uint8, iscrowd (N,)) of the
        thing segments, e.g. for Panoptic FPN's instance branch."""
        things = [s for s in self.segments_info if s["category_id"] in self.thing_ids and (include_crowd or not s.get("iscrowd", 0))]
        if things:
            masks = np.stack([self.segment_map == s["id"] for s in things]).astype(np.uint8)
        else:
            masks = np.zeros((0,) + self.segment_map.shape, np.uint8)
        boxes = np.zeros((len(things), 4), np.float32)
        for k, mask in enumerate(masks):
            rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            boxes[k] = (columns[0], rows[0], columns[-1] + 1, rows[-1] + 1)
        category_ids = np.array([s["category_id"] for s in things], np.int64)
        iscrowd = np.array([bool(s.get("iscrowd", 0)) for s in things], bool)
        return boxes, category_ids, masks, iscrowd


class CocoPanopticDataset:
    """Map-style dataset over a COCO panoptic JSON, its PNG folder and (optionally) the image folder.

    `categories` is the JSON's category list; `things` / `stuff` are CategoryTables of the thing and
    stuff categories (contiguous labels for a model's instance and semantic branches).
    """

    def __init__(
        self,
        panoptic_json: str | Path,
        panoptic_dir: str | Path,
        image_dir: str | Path | None = None,
        transform: Callable[[PanopticSample], Any] | None = None,
    ) -> None:
        self.panoptic_json = Path(panoptic_json)
        self.panoptic_dir = _require_folder(panoptic_dir, "panoptic PNG")
        self.image_dir = None if image_dir is None else _require_folder(image_dir, "image")
        self.data = load_json(self.panoptic_json, "COCO panoptic JSON")
        for key in ("images", "annotations", "categories"):
            if not isinstance(self.data, dict) or not isinstance(self.data.get(key), list):
                raise UserError(f"{self.panoptic_json}: '{key}' is missing or not a list")
        self.categories = list(self.data["categories"])
        self.things = CategoryTable.from_coco([c for c in self.categories if c.get("isthing")])
        self.stuff = CategoryTable.from_coco([c for c in self.categories if not c.get("isthing")])
        self.images = {image["id"]: image for image in self.data["images"]}
        self.annotations = list(self.data["annotations"])
        for annotation in self.annotations:
            if annotation.get("image_id") not in self.images:
                raise UserError(f"{self.panoptic_json}: annotation for image id {annotation.get('image_id')!r}, which is not in 'images'")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, index: int):
        annotation = self.annotations[index]
        info = self.images[annotation["image_id"]]
        segment_map = read_panoptic_png(self.panoptic_dir / annotation["file_name"])
        image = None
        if self.image_dir is not None:
            image = read_image(self.image_dir / info["file_name"])
            if image.shape[:2] != segment_map.shape:
                raise UserError(
                    f"{self.panoptic_dir / annotation['file_name']}: size {segment_map.shape[1]}x{segment_map.shape[0]} "
                    f"differs from its image {info['file_name']} ({image.shape[1]}x{image.shape[0]}), image id {info['id']!r}"
                )
        sample = PanopticSample(
            image_id=annotation["image_id"],
            image=image,
            segment_map=segment_map,
            segments_info=list(annotation["segments_info"]),
            thing_ids=frozenset(self.things.ids),
        )
        return self.transform(sample) if self.transform else sample

    def semantic_labels(self) -> dict[int, int]:
        """Panoptic FPN's semantic-branch labels (detectron2's convention): every thing category -> 0,
        stuff categories -> 1..S in id order. Use with PanopticSample.semantic_map."""
        return {**{i: 0 for i in self.things.ids}, **{i: k + 1 for k, i in enumerate(self.stuff.ids)}}


# --- the dataset -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CocoSplit:
    """The COCO files of one split: instances JSON, panoptic JSON and PNG folder, image folder."""

    instances_json: Path
    panoptic_json: Path
    panoptic_dir: Path
    image_dir: Path


class Coco(Dataset):
    """A COCO tree (Lin et al., ECCV 2014): detection, instance segmentation and panoptic segmentation; its
    categories come with its annotation files."""

    name = "coco"
    title = "COCO instances / panoptic (categories from the annotation files)"
    tasks = ("detection", "instance", "panoptic")
    splits = ("train", "val")
    layout = "annotations/{instances,panoptic}_<split>.json, annotations/panoptic_<split>/*.png, <split>/ images (or train2017 / val2017)"
    citation = "Lin et al., ECCV 2014; Kirillov et al., CVPR 2019 (panoptic)"

    def coco_files(self, root: Path, split: str) -> CocoSplit:
        """annotations/{instances,panoptic}_<split>.json, annotations/panoptic_<split>/ and <split>/ images;
        "train" / "val" also find COCO's train2017 / val2017."""
        annotations = Path(root) / "annotations"
        for name in (split, f"{split}2017"):
            if (annotations / f"instances_{name}.json").exists() or (annotations / f"panoptic_{name}.json").exists():
                return CocoSplit(annotations / f"instances_{name}.json", annotations / f"panoptic_{name}.json",
                                 annotations / f"panoptic_{name}", Path(root) / name)
        raise UserError(f"{annotations}: no instances_{split}.json or panoptic_{split}.json (COCO layout: {self.layout})")

    def ground_truth_files(self, root: Path):
        return (path for path in (Path(root) / "annotations").rglob("*") if path.is_file())


register_dataset(Coco())
