"""ADE20K scene parsing, the 150-class SceneParsing benchmark (Zhou et al., CVPR 2017): dataset `ade20k`.

Layout, as the benchmark's ADEChallengeData2016.zip unpacks (and as mmsegmentation's ADE20KDataset and
configs/_base_/datasets/ade20k.py read it, unchanged): ADEChallengeData2016/images/{training,validation}/*.jpg and
ADEChallengeData2016/annotations/{training,validation}/*.png, one 8-bit label map per image with the image's stem.
The root is the ADEChallengeData2016 folder or the folder holding it. Our split `train` is `training` (20,210
images), `val` is `validation` (2,000). The test images (release_test/testing/*.jpg) come without labels and are
not a split here.

Labels: stored 0 is "other" (every object outside the 150 classes), ignored in training and evaluation; stored 1..150
are the classes below, label ids 0..149. This is mmsegmentation's `reduce_zero_label`, which ADE20KDataset fixes to
True. Class names and their order: mmsegmentation's ADE20KDataset (mmseg/datasets/ade.py; its 'bed ' without the
trailing space), the benchmark's objectInfo150 order. Colours: VOC's colour map (metrics.labels.default_palette).
"""

from __future__ import annotations

from pathlib import Path

from alignbench.bench.data.catalog import SemanticDataset, SemanticFrame, paired_frames, reduce_zero_label_lut, register_dataset
from alignbench.metrics.labels import class_table

CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet", "sidewalk",
    "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water", "painting", "sofa",
    "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
    "bathtub", "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill",
    "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine",
    "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food",
    "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket",
    "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
SPLIT_FOLDERS = {"train": "training", "val": "validation"}
FOLDER = "ADEChallengeData2016"


class ADE20K(SemanticDataset):
    name = "ade20k"
    title = "ADE20K scene parsing (ADEChallengeData2016, 150 classes, stored 0 = other, ignored)"
    splits = ("train", "val")
    layout = "ADEChallengeData2016/images/{training,validation}/*.jpg and ADEChallengeData2016/annotations/{training,validation}/*.png"
    citation = ("Zhou et al., CVPR 2017 (ADEChallengeData2016); classes and reduce_zero_label: mmsegmentation "
                "mmseg/datasets/ade.py, configs/_base_/datasets/ade20k.py")
    native_size = None
    labels = class_table(CLASSES, ignored_name="other")
    label_lut = reduce_zero_label_lut(len(CLASSES))

    def base(self, root: Path) -> Path:
        """The ADEChallengeData2016 folder: `root` itself or its child of that name."""
        return root / FOLDER if (root / FOLDER).is_dir() else root

    def split_frames(self, root: Path, split: str, require_images: bool = True) -> list[SemanticFrame]:
        base, folder = self.base(root), SPLIT_FOLDERS[split]
        label_dir = base / "annotations" / folder
        if not label_dir.is_dir():
            raise self.missing_split(root, split, label_dir)
        return paired_frames(base / "images" / folder, label_dir, ".jpg", ".png", None, require_images)

    def ground_truth_files(self, root: Path):
        base = self.base(Path(root))
        return (path for folder in SPLIT_FOLDERS.values() for path in sorted((base / "annotations" / folder).glob("*.png")))


ADE20K_DATASET = register_dataset(ADE20K())
