"""PASCAL VOC 2012 segmentation (Everingham et al., IJCV 2010), with SBD's augmented training set (Hariharan et
al., ICCV 2011): dataset `voc2012`. Also the VOC-tree helpers that PASCAL-Context (bench/data/pascal_context.py) and
COCO-Stuff 10K share: the root variants of a VOCdevkit tree, name lists and MATLAB label files.

Layout (the VOCtrainval_11-May-2012 devkit): VOCdevkit/VOC2012/JPEGImages/*.jpg, VOCdevkit/VOC2012/SegmentationClass/
*.png (palette PNGs whose indices are the class ids 0..20, 255 on object boundaries and difficult regions: void,
ignored) and VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt (1,464 / 1,449 / 2,913 names). The
root is VOCdevkit's parent, VOCdevkit itself or VOC2012 itself.

Split `train_aug` (10,582 images), read from either of two layouts:
* mmsegmentation's (tools/dataset_converters/voc_aug.py, configs/_base_/datasets/pascal_voc12_aug.py): the VOC train
  list from SegmentationClass/ plus ImageSets/Segmentation/aug.txt (SBD images outside VOC train and val) from
  SegmentationClassAug/*.png (SBD's labels as 8-bit maps, 0..20).
* SBD's own (benchmark.tgz): benchmark_RELEASE/dataset/{img/*.jpg, cls/*.mat, train.txt, val.txt}, beside VOCdevkit
  or inside the root; cls/X.mat holds a struct GTcls whose field Segmentation is the class map (0..20). train_aug is
  (SBD train + SBD val + VOC train) minus VOC val, as voc_aug.py builds it; each label comes from VOC's
  SegmentationClass where VOC has one, else from SBD, and each image from JPEGImages, else from SBD's img/.
Where both are present the mmsegmentation layout is read. `training_split` is train_aug when either is present.

Classes: background and the 20 VOC classes in the devkit's order (VOCinit.m); colours: the devkit's colour map
(metrics.labels.default_palette), which is also the palette of the SegmentationClass PNGs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignbench.bench.data.catalog import SemanticDataset, SemanticFrame, identity_lut, paired_frames, register_dataset
from alignbench.bench.errors import UserError
from alignbench.metrics.labels import class_table, default_palette

CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
YEAR = "VOC2012"
SBD_FOLDER = "benchmark_RELEASE"


# --- helpers shared by the VOC-based readers ------------------------------------------------------------


def find_year_folder(root: Path, year: str) -> Path:
    """The VOC<year> folder of a root that is VOCdevkit's parent, VOCdevkit or VOC<year> itself; when none is on
    disk, root/VOCdevkit/<year> (so that errors name the folder that is expected)."""
    for candidate in (root / "VOCdevkit" / year, root / year):
        if candidate.is_dir():
            return candidate
    if root.name == year or (root / "ImageSets").is_dir() or (root / "JPEGImages").is_dir():
        return root
    return root / "VOCdevkit" / year


def read_names(path: Path) -> list[str]:
    """The image names of a list file (one per line, the first word of each line), in file order."""
    if not path.is_file():
        raise UserError(f"{path}: list file not found")
    names = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise UserError(f"{path}: lists no images")
    return names


def read_mat_variable(path: Path, variable: str):
    """One variable of a MATLAB (v4 to v7) file, or one UserError line naming the file."""
    from scipy.io import loadmat  # here: scipy loads only for .mat labels (SBD, PASCAL-Context, COCO-Stuff 10k), not to list datasets

    if not path.is_file():
        raise UserError(f"{path}: label file not found")
    try:
        content = loadmat(path, variable_names=[variable])
    except Exception as error:  # scipy raises ValueError, MatReadError, NotImplementedError (v7.3), OSError, ...
        raise UserError(f"{path}: cannot read MATLAB file ({error})") from None
    if variable not in content:
        raise UserError(f"{path}: no variable {variable!r} in the MATLAB file")
    return content[variable]


def integer_label_map(values, path: Path, what: str, high: int) -> np.ndarray:
    """A 2-D numeric array of a .mat file as int64, its values checked to lie in 0..high."""
    values = np.asarray(values)
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.number):
        raise UserError(f"{path}: {what} is not a 2-D label map (shape {values.shape}, type {values.dtype})")
    values = values.astype(np.int64)
    low, top = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < 0 or top > high:
        raise UserError(f"{path}: label value {low if low < 0 else top} outside 0..{high}")
    return values


# --- the dataset ----------------------------------------------------------------------------------------


class VOC2012(SemanticDataset):
    name = "voc2012"
    title = "PASCAL VOC 2012 segmentation (21 classes with background, 255 = void; train_aug: SBD's 10,582 images)"
    splits = ("train", "val", "trainval", "train_aug")
    layout = ("VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png, ImageSets/Segmentation/<split>.txt}; train_aug: "
              "SegmentationClassAug/*.png + ImageSets/Segmentation/aug.txt (mmseg) or benchmark_RELEASE/dataset/ (SBD)")
    citation = ("Everingham et al., IJCV 2010 (VOC2012 devkit); Hariharan et al., ICCV 2011 (SBD benchmark.tgz); train_aug: "
                "mmsegmentation tools/dataset_converters/voc_aug.py, configs/_base_/datasets/pascal_voc12_aug.py")
    native_size = None
    labels = class_table(CLASSES, default_palette(len(CLASSES)), ignored_name="void")
    label_lut = identity_lut(len(CLASSES))

    def split_frames(self, root: Path, split: str, require_images: bool = True) -> list[SemanticFrame]:
        year = find_year_folder(root, YEAR)
        if split == "train_aug":
            return self.train_aug_frames(root, year, require_images)
        return self.listed_frames(root, year, split, require_images)

    def listed_frames(self, root: Path, year: Path, split: str, require_images: bool) -> list[SemanticFrame]:
        label_dir, listing = year / "SegmentationClass", year / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not label_dir.is_dir():
            raise self.missing_split(root, split, label_dir)
        if not listing.is_file():
            raise self.missing_split(root, split, listing)
        return paired_frames(year / "JPEGImages", label_dir, ".jpg", ".png", sorted(set(read_names(listing))), require_images)

    def aug_source(self, root: Path, year: Path) -> tuple[str, Path] | None:
        """("mmseg", SegmentationClassAug folder) or ("sbd", benchmark_RELEASE/dataset folder), None without either."""
        if (year / "SegmentationClassAug").is_dir() and (year / "ImageSets" / "Segmentation" / "aug.txt").is_file():
            return "mmseg", year / "SegmentationClassAug"
        for folder in (root / SBD_FOLDER, year.parent / SBD_FOLDER, year.parent.parent / SBD_FOLDER):
            dataset = folder / "dataset"
            if (dataset / "cls").is_dir() and (dataset / "train.txt").is_file() and (dataset / "val.txt").is_file():
                return "sbd", dataset
        return None

    def train_aug_frames(self, root: Path, year: Path, require_images: bool) -> list[SemanticFrame]:
        source = self.aug_source(root, year)
        if source is None:
            raise self.missing_split(root, "train_aug", year / "SegmentationClassAug")
        kind, folder = source
        train = {frame.name: frame for frame in self.listed_frames(root, year, "train", require_images)}
        images = year / "JPEGImages"
        if kind == "mmseg":
            names = sorted(set(read_names(year / "ImageSets" / "Segmentation" / "aug.txt")) - set(train))
            frames = {frame.name: frame for frame in paired_frames(images, folder, ".jpg", ".png", names, require_images)}
            return sorted({**frames, **train}.values(), key=lambda frame: frame.name)
        voc_val = set(read_names(year / "ImageSets" / "Segmentation" / "val.txt"))
        names = (set(read_names(folder / "train.txt")) | set(read_names(folder / "val.txt")) | set(train)) - voc_val
        frames = []
        for name in sorted(names):
            if name in train:
                frames.append(train[name])
                continue
            label = year / "SegmentationClass" / f"{name}.png"
            if not label.is_file():
                label = folder / "cls" / f"{name}.mat"
                if not label.is_file():
                    raise UserError(f"{label}: label file not found (SBD lists {name} and VOC's SegmentationClass has none)")
            image = images / f"{name}.jpg"
            if not image.is_file() and (folder / "img" / f"{name}.jpg").is_file():
                image = folder / "img" / f"{name}.jpg"
            if require_images and not image.is_file():
                raise UserError(f"{image}: missing image for {label.name}")
            frames.append(SemanticFrame(name, image, label))
        return frames

    def training_split(self, root: Path) -> str:
        root = Path(root).expanduser()
        if root.is_dir() and self.aug_source(root, find_year_folder(root, YEAR)) is not None:
            return "train_aug"
        return "train"

    def read_label(self, frame: SemanticFrame) -> np.ndarray:
        if frame.label.suffix != ".mat":
            return super().read_label(frame)
        gt = read_mat_variable(frame.label, "GTcls")
        if not isinstance(gt, np.ndarray) or gt.dtype.names is None or "Segmentation" not in gt.dtype.names or gt.size != 1:
            raise UserError(f"{frame.label}: GTcls is not SBD's struct with a Segmentation field")
        segmentation = integer_label_map(gt["Segmentation"].flat[0], frame.label, "GTcls.Segmentation", 255)
        return self.map_labels(segmentation.astype(np.uint8), frame.label)

    def ground_truth_files(self, root: Path):
        root = Path(root)
        year = find_year_folder(root, YEAR)
        files = [*sorted((year / "SegmentationClass").glob("*.png")), *sorted((year / "SegmentationClassAug").glob("*.png"))]
        source = self.aug_source(root, year) if root.is_dir() else None
        if source is not None and source[0] == "sbd" and source[1].is_relative_to(root):  # fingerprints list paths relative to the root
            files += sorted((source[1] / "cls").glob("*.mat"))
        return files


VOC2012_DATASET = register_dataset(VOC2012())
