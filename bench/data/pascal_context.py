"""PASCAL-Context (Mottaghi et al., CVPR 2014), the 59 most frequent classes of its full labelling of the VOC 2010
images: datasets `pascal_context` (59 classes, background ignored) and `pascal_context60` (60, background a class).

Layouts, under a root that is VOCdevkit's parent, VOCdevkit itself or VOC2010 itself (bench/data/voc.py):
* mmsegmentation's (tools/dataset_converters/pascal_context.py, via the Detail API's trainval_merged.json):
  VOCdevkit/VOC2010/JPEGImages/*.jpg, VOCdevkit/VOC2010/SegmentationClassContext/*.png holding 0 = background and
  1..59 = the classes below (the converter's table is the 59 classes' ids among the 459 of the full labelling, sorted,
  so the classes come in alphabetical order) and VOCdevkit/VOC2010/ImageSets/SegmentationContext/{train,val}.txt
  (4,998 / 5,105 names). mmseg's PascalContextDataset59 reads the maps with reduce_zero_label=True and
  PascalContextDataset with background as class 0: here `pascal_context` maps stored 0 to the ignored id and 1..59
  to label ids 0..58, `pascal_context60` keeps 0..59 as label ids (255, the padding value, ignored).
* the official release (trainval.tar.gz from the PASCAL-Context site): trainval/<name>.mat whose variable LabelMap
  (uint16) holds the full labelling's ids, with labels.txt (459 "id: name" lines) beside the trainval folder or in
  it, and the trainval folder inside VOC2010 (or VOCdevkit, or the root); the splits are VOC 2010's
  ImageSets/Main/{train,val}.txt (the same 4,998 / 5,105 images). Each of the 59 classes is found in labels.txt by
  name; 0 and every other label are background, as in the 59-class benchmark.
Where both are present the mmsegmentation layout is read.

Class names: mmsegmentation's PascalContextDataset (mmseg/datasets/pascal_context.py), which are also the names in
the release's labels.txt. Colours: VOC's colour map (metrics.labels.default_palette).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from alignbench.bench.data.catalog import (
    SemanticDataset,
    SemanticFrame,
    identity_lut,
    paired_frames,
    reduce_zero_label_lut,
    register_dataset,
)
from alignbench.bench.data.voc import find_year_folder, integer_label_map, read_mat_variable, read_names
from alignbench.bench.errors import UserError
from alignbench.metrics.labels import class_table

CLASSES_59 = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building", "bus",
    "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog", "door", "fence",
    "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse", "person",
    "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky", "snow", "sofa",
    "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood",
)
YEAR = "VOC2010"
FULL_LABELS = "labels.txt"


@lru_cache(maxsize=8)
def full_label_table(labels_path: str) -> np.ndarray:
    """uint8 by full-labelling id (0..max id in labels.txt): the 60-class value (0 background, 1..59 the classes)."""
    path = Path(labels_path)
    ids = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        key, colon, name = line.partition(":")
        if not colon or not key.strip().isdigit():
            raise UserError(f"{path}:{number}: expected 'ID: NAME', got {line.strip()!r}")
        ids.setdefault(name.strip(), int(key))
    missing = [name for name in CLASSES_59 if name not in ids]
    if missing:
        raise UserError(f"{path}: no line for the PASCAL-Context class(es) {', '.join(missing)}")
    table = np.zeros(max(ids.values()) + 1, dtype=np.uint8)
    for value, name in enumerate(CLASSES_59, start=1):
        table[ids[name]] = value
    return table


class PascalContext(SemanticDataset):
    name = "pascal_context"
    title = "PASCAL-Context, 59 classes (VOC 2010 images; background ignored)"
    splits = ("train", "val")
    layout = ("VOCdevkit/VOC2010/{JPEGImages/*.jpg, SegmentationClassContext/*.png, ImageSets/SegmentationContext/{train,val}.txt} "
              "(mmseg), or VOC2010/trainval/*.mat + labels.txt with ImageSets/Main/{train,val}.txt (trainval.tar.gz)")
    citation = ("Mottaghi et al., CVPR 2014 (trainval.tar.gz, labels.txt); converted layout and classes: mmsegmentation "
                "tools/dataset_converters/pascal_context.py, mmseg/datasets/pascal_context.py")
    native_size = None
    labels = class_table(CLASSES_59, ignored_name="background")
    label_lut = reduce_zero_label_lut(len(CLASSES_59))

    def split_frames(self, root: Path, split: str, require_images: bool = True) -> list[SemanticFrame]:
        year = find_year_folder(root, YEAR)
        label_dir = year / "SegmentationClassContext"
        if label_dir.is_dir():
            listing = year / "ImageSets" / "SegmentationContext" / f"{split}.txt"
            if not listing.is_file():
                raise self.missing_split(root, split, listing)
            return paired_frames(year / "JPEGImages", label_dir, ".jpg", ".png", sorted(set(read_names(listing))), require_images)
        official = self.official_folder(root, year)
        if official is not None:
            listing = year / "ImageSets" / "Main" / f"{split}.txt"
            if not listing.is_file():
                raise self.missing_split(root, split, listing)
            return paired_frames(year / "JPEGImages", official, ".jpg", ".mat", sorted(set(read_names(listing))), require_images)
        raise self.missing_split(root, split, label_dir)

    def official_folder(self, root: Path, year: Path) -> Path | None:
        """The release's trainval/ folder of .mat files, None when there is none."""
        for folder in (year / "trainval", year.parent / "trainval", root / "trainval"):
            if folder.is_dir():
                return folder
        return None

    def read_label(self, frame: SemanticFrame) -> np.ndarray:
        if frame.label.suffix != ".mat":
            return super().read_label(frame)
        table = full_label_table(str(self.labels_file(frame.label)))
        label_map = integer_label_map(read_mat_variable(frame.label, "LabelMap"), frame.label, "LabelMap", len(table) - 1)
        return self.map_labels(table[label_map], frame.label)

    def labels_file(self, mat: Path) -> Path:
        """The release's labels.txt for a trainval/<name>.mat: beside the trainval folder or inside it."""
        for path in (mat.parent.parent / FULL_LABELS, mat.parent / FULL_LABELS):
            if path.is_file():
                return path
        raise UserError(f"{mat.parent.parent / FULL_LABELS}: PASCAL-Context's {FULL_LABELS} (459 'id: name' lines of "
                        f"trainval.tar.gz) not found beside {mat.parent}, needed to read {mat.name}")

    def ground_truth_files(self, root: Path):
        root = Path(root)
        year = find_year_folder(root, YEAR)
        files = sorted((year / "SegmentationClassContext").glob("*.png"))
        official = self.official_folder(root, year) if root.is_dir() else None
        if official is not None and official.is_relative_to(root):  # fingerprints list paths relative to the root
            files += sorted(official.glob("*.mat"))
        return files


class PascalContext60(PascalContext):
    name = "pascal_context60"
    title = "PASCAL-Context, 60 classes (VOC 2010 images; background is class 0)"
    labels = class_table(("background", *CLASSES_59))
    label_lut = identity_lut(len(CLASSES_59) + 1)


PASCAL_CONTEXT = register_dataset(PascalContext())
PASCAL_CONTEXT60 = register_dataset(PascalContext60())
