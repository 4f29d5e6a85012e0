"""LIP, Look Into Person (Gong et al., CVPR 2017), single-person human parsing: dataset `lip`, 20 classes with
background evaluated.

Layout, as the official TrainVal_images.zip and TrainVal_parsing_annotations.zip unpack:
TrainVal_images/{train_images,val_images}/*.jpg, TrainVal_parsing_annotations/{train_segmentations,
val_segmentations}/*.png (8-bit maps, one per image, with the image's stem) and, optionally,
TrainVal_images/{train_id,val_id}.txt listing the image ids of each split (30,462 / 10,000). mmsegmentation's
layout (docs/en/user_guides/2_dataset_prepare.md, "LIP(Look Into Person) dataset") puts the same four folders
directly under the root: {train_images,val_images,train_segmentations,val_segmentations}/. Each folder is looked for
in the official place first, then in the flat one; an id list beside the image folder is used when present, and
without one a split is every label map with its image.

Labels 0..19 are the classes below (mmsegmentation's LIPDataset, mmseg/datasets/lip.py, the order of LIP's
annotations); 255, mmseg's padding value, is ignored. Colours: VOC's colour map (metrics.labels.default_palette).
"""

from __future__ import annotations

from pathlib import Path

from alignbench.bench.data.catalog import SemanticDataset, SemanticFrame, identity_lut, paired_frames, register_dataset
from alignbench.bench.errors import UserError
from alignbench.metrics.labels import class_table

CLASSES = (
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "UpperClothes", "Dress", "Coat", "Socks", "Pants", "Jumpsuits",
    "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg", "Left-shoe", "Right-shoe",
)
IMAGES, ANNOTATIONS = "TrainVal_images", "TrainVal_parsing_annotations"


class LIP(SemanticDataset):
    name = "lip"
    title = "LIP, Look Into Person human parsing (20 classes, background evaluated)"
    splits = ("train", "val")
    layout = ("TrainVal_images/{train,val}_images/*.jpg, TrainVal_parsing_annotations/{train,val}_segmentations/*.png and "
              "optional TrainVal_images/{train,val}_id.txt, or mmseg's {train,val}_{images,segmentations}/ under the root")
    citation = "Gong et al., CVPR 2017 (LIP TrainVal_images.zip, TrainVal_parsing_annotations.zip); classes: mmsegmentation mmseg/datasets/lip.py"
    native_size = None
    labels = class_table(CLASSES)
    label_lut = identity_lut(len(CLASSES))

    def folders(self, root: Path, split: str) -> tuple[Path, Path]:
        """(image folder, label folder) of a split, each the official layout's where it is on disk, else the flat one
        of mmsegmentation (whose instructions also move only the segmentation folders up), else the official one."""
        def pick(official: Path, flat: Path) -> Path:
            return flat if not official.is_dir() and flat.is_dir() else official

        return (pick(root / IMAGES / f"{split}_images", root / f"{split}_images"),
                pick(root / ANNOTATIONS / f"{split}_segmentations", root / f"{split}_segmentations"))

    def split_frames(self, root: Path, split: str, require_images: bool = True) -> list[SemanticFrame]:
        image_dir, label_dir = self.folders(root, split)
        if not label_dir.is_dir():
            raise self.missing_split(root, split, label_dir)
        listing = image_dir.parent / f"{split}_id.txt"
        names = None
        if listing.is_file():
            names = sorted({line.strip() for line in listing.read_text().splitlines() if line.strip()})
            if not names:
                raise UserError(f"{listing}: lists no images")
        return paired_frames(image_dir, label_dir, ".jpg", ".png", names, require_images)

    def ground_truth_files(self, root: Path):
        root = Path(root)
        return (path for split in self.splits for path in sorted(self.folders(root, split)[1].glob("*.png")))


LIP_DATASET = register_dataset(LIP())
