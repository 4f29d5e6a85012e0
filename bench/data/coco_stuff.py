"""COCO-Stuff (Caesar et al., CVPR 2018): datasets `coco_stuff164k` and `coco_stuff10k`, 171 evaluated classes.

Classes. COCO-Stuff labels pixels with COCO's 182 category ids: 1..91 things, 92..182 stuff, 0 unlabeled (the
cocostuff repository's labels.txt, which names all 182). Eleven thing ids carry no annotation in COCO
(12 street sign, 26 hat, 29 shoe, 30 eye glasses, 45 plate, 66 mirror, 68 window, 69 desk, 71 door, 83 blender,
91 hair brush), which leaves 80 things + 91 stuff = 171 classes. They are label ids 0..170 in COCO-id order, the
order of mmsegmentation's COCOStuffDataset and of its converters' clsID_to_trID tables. Unlabeled (and the unused
ids) are the one ignored id.

`coco_stuff164k`, the official stuffthingmaps_trainval2017 layout (cocostuff README, "Caffe-compatible stuff-thing
maps"): images/{train2017,val2017}/*.jpg and annotations/{train2017,val2017}/*.png, where a pixel holds COCO id - 1
(0..181) and 255 is unlabeled. mmsegmentation's converter (tools/dataset_converters/coco_stuff164k.py) writes
<stem>_labelTrainIds.png beside each map, holding label ids 0..170 and 255 (its configs read them with no
reduce_zero_label): a split folder with such files is read from them alone. Splits: train (train2017), val (val2017).

`coco_stuff10k`, the official cocostuff-10k-v1.1 layout: images/*.jpg, annotations/*.mat (MATLAB files whose
variable S holds 0 = unlabeled and k = COCO id k) and imageLists/{train,test}.txt (9,000 / 1,000 names without
extension). mmsegmentation's converter (tools/dataset_converters/coco_stuff10k.py) writes
images/{train2014,test2014}/*.jpg and annotations/{train2014,test2014}/<stem>_labelTrainIds.png; those maps hold
0 = unlabeled and 1..171 for the 171 classes (its table maps 0 -> 0 and 182 -> 171; COCOStuffDataset's docstring
in mmseg/datasets/coco_stuff.py says so, and configs/_base_/datasets/coco-stuff10k.py reads them with
reduce_zero_label=True), so stored 0 is ignored and 1..171 are label ids 0..170 here. Where both layouts are
present the converted one is read. Splits: train and test (FaPN and the papers it compares with report
COCO-Stuff-10K on test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignbench.bench.data.catalog import (
    SemanticDataset,
    SemanticFrame,
    identity_lut,
    label_lut,
    paired_frames,
    reduce_zero_label_lut,
    register_dataset,
)
from alignbench.bench.data.voc import integer_label_map, read_mat_variable
from alignbench.bench.errors import UserError
from alignbench.bench.io import read_png
from alignbench.metrics.labels import IGNORE_TRAIN_ID, class_table

# COCO-Stuff's names of category ids 1..182 (cocostuff labels.txt; 0 is "unlabeled")
COCO_STUFF_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "hat", "backpack", "umbrella", "shoe", "eye glasses", "handbag", "tie",
    "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
    "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana",
    "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "mirror", "dining table", "window", "desk", "toilet", "door", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "blender", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush", "hair brush",
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower",
    "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves",
    "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow",
    "plant-other", "plastic", "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug",
    "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick", "wall-concrete",
    "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind",
    "window-other", "wood",
)
NUM_COCO_IDS = 182
UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)  # thing ids without annotations in COCO
USED_IDS = tuple(coco_id for coco_id in range(1, NUM_COCO_IDS + 1) if coco_id not in UNUSED_IDS)
CLASSES = tuple(COCO_STUFF_NAMES[coco_id - 1] for coco_id in USED_IDS)
NUM_CLASSES = len(CLASSES)  # 171
IGNORED = NUM_CLASSES  # the table's ignored label id

# stuffthingmaps PNG: COCO id - 1, 255 unlabeled; the unused ids never occur and are ignored
STUFFTHINGMAPS_LUT = label_lut({
    **{coco_id - 1: index for index, coco_id in enumerate(USED_IDS)},
    **{coco_id - 1: IGNORED for coco_id in UNUSED_IDS},
    IGNORE_TRAIN_ID: IGNORED,
})
TRAIN_IDS_SUFFIX = "_labelTrainIds.png"


class CocoStuff(SemanticDataset):
    """The 171-class table and label decoding shared by both COCO-Stuff layouts (module docstring)."""

    citation = ("Caesar et al., CVPR 2018; class ids: cocostuff labels.txt and README; converted layouts: mmsegmentation "
                "tools/dataset_converters/coco_stuff{164k,10k}.py, mmseg/datasets/coco_stuff.py, configs/_base_/datasets/coco-stuff{164k,10k}.py")
    native_size = None
    labels = class_table(CLASSES, ignored_name="unlabeled")
    label_lut = STUFFTHINGMAPS_LUT
    train_ids_lut: np.ndarray  # how the layout's *_labelTrainIds.png maps to label ids

    def read_label(self, frame: SemanticFrame) -> np.ndarray:
        if frame.label.name.endswith(TRAIN_IDS_SUFFIX):
            return self.map_labels(read_png(frame.label), frame.label, lut=self.train_ids_lut)
        if frame.label.suffix == ".mat":
            return self.map_labels(self.read_mat(frame.label), frame.label)
        return self.map_labels(read_png(frame.label), frame.label)

    def read_mat(self, path: Path) -> np.ndarray:
        """A cocostuff-10k .mat label map (S: 0 unlabeled, k = COCO id k) in the stuffthingmaps encoding (k - 1, 255)."""
        values = integer_label_map(read_mat_variable(path, "S"), path, "S", NUM_COCO_IDS)
        return np.where(values == 0, IGNORE_TRAIN_ID, values - 1).astype(np.uint8)


class CocoStuff164k(CocoStuff):
    name = "coco_stuff164k"
    title = "COCO-Stuff 164K (COCO 2017 images, 171 classes: 80 things + 91 stuff, 255 = unlabeled)"
    splits = ("train", "val")
    layout = "images/{train2017,val2017}/*.jpg and annotations/{train2017,val2017}/*.png (or mmseg's *_labelTrainIds.png)"
    train_ids_lut = identity_lut(NUM_CLASSES)
    SPLIT_FOLDERS = {"train": "train2017", "val": "val2017"}

    def split_frames(self, root: Path, split: str, require_images: bool = True) -> list[SemanticFrame]:
        folder = self.SPLIT_FOLDERS[split]
        image_dir, label_dir = root / "images" / folder, root / "annotations" / folder
        if not label_dir.is_dir():
            raise self.missing_split(root, split, label_dir)
        if next(label_dir.glob(f"*{TRAIN_IDS_SUFFIX}"), None) is not None:  # mmsegmentation's converted maps
            return paired_frames(image_dir, label_dir, ".jpg", TRAIN_IDS_SUFFIX, None, require_images)
        return paired_frames(image_dir, label_dir, ".jpg", ".png", None, require_images)

    def ground_truth_files(self, root: Path):
        root = Path(root)
        return (path for folder in self.SPLIT_FOLDERS.values() for path in sorted((root / "annotations" / folder).glob("*.png")))


class CocoStuff10k(CocoStuff):
    name = "coco_stuff10k"
    title = "COCO-Stuff 10K v1.1 (171 classes: 80 things + 91 stuff, 0 = unlabeled; splits train / test)"
    splits = ("train", "test")
    layout = ("images/*.jpg, annotations/*.mat and imageLists/{train,test}.txt (cocostuff-10k-v1.1), or mmseg's "
              "images/{train2014,test2014}/*.jpg and annotations/{train2014,test2014}/*_labelTrainIds.png")
    train_ids_lut = reduce_zero_label_lut(NUM_CLASSES)
    SPLIT_FOLDERS = {"train": "train2014", "test": "test2014"}  # mmsegmentation's converted layout

    def split_frames(self, root: Path, split: str, require_images: bool = True) -> list[SemanticFrame]:
        folder = self.SPLIT_FOLDERS[split]
        converted = root / "annotations" / folder
        if converted.is_dir():
            return paired_frames(root / "images" / folder, converted, ".jpg", TRAIN_IDS_SUFFIX, None, require_images)
        listing = root / "imageLists" / f"{split}.txt"
        if not listing.is_file():
            raise self.missing_split(root, split, listing)
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        if not names:
            raise UserError(f"{listing}: lists no images")
        return paired_frames(root / "images", root / "annotations", ".jpg", ".mat", sorted(names), require_images)

    def ground_truth_files(self, root: Path):
        root = Path(root)
        converted = (path for folder in self.SPLIT_FOLDERS.values() for path in sorted((root / "annotations" / folder).glob("*.png")))
        return [*sorted((root / "annotations").glob("*.mat")), *converted]


COCO_STUFF164K = register_dataset(CocoStuff164k())
COCO_STUFF10K = register_dataset(CocoStuff10k())
