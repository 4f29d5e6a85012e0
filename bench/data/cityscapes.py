"""Cityscapes (Cordts et al., CVPR 2016): the reader of its official tree, registered as dataset `cityscapes`.

Layout: leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png and
gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_{labelIds,instanceIds}.png (splits train, val, test; the test
labels are all 'unlabeled'). mmsegmentation's converter only adds *_gtFine_labelTrainIds.png files beside these, so
an mmseg folder reads as it is. Label ids map to train ids through cityscapesscripts' label table
(metrics.labels.CITYSCAPES), which also defines the iIoU and category scores. The same tree written by
`alignbench data synth` is the `synthetic` dataset (bench/data/synthetic.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alignbench.bench.data.catalog import SemanticDataset, SemanticFrame, SemanticSample, register_dataset
from alignbench.bench.errors import UserError
from alignbench.bench.io import read_png
from alignbench.metrics.labels import CITYSCAPES

LABEL_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
IMAGE_SUFFIX = "_leftImg8bit.png"
_FRAME_KEY = re.compile(r"^([^_/]+_\d+_\d+)")


@dataclass(frozen=True)
class CityscapesFrame(SemanticFrame):
    """A Cityscapes frame: `name` is <city>_<seq>_<frame>."""

    city: str = ""


def find_frames(root: str | Path, split: str, require_images: bool = True) -> list[CityscapesFrame]:
    """All annotated frames of a split, sorted by name; every expected file must exist."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: Cityscapes root folder not found")
    gt_dir = root / "gtFine" / split
    if not gt_dir.is_dir():
        raise UserError(f"{gt_dir}: folder not found (expected gtFine/{split}/<city>/ under the Cityscapes root)")
    frames = []
    for label_path in sorted(gt_dir.glob(f"*/*{LABEL_SUFFIX}")):
        name = label_path.name[: -len(LABEL_SUFFIX)]
        city = label_path.parent.name
        frame = CityscapesFrame(
            name=name,
            image=root / "leftImg8bit" / split / city / (name + IMAGE_SUFFIX),
            label=label_path,
            instances=label_path.with_name(name + INSTANCE_SUFFIX),
            city=city,
        )
        if not frame.instances.is_file():
            raise UserError(f"{frame.instances}: missing instanceIds file for {label_path.name}")
        if require_images and not frame.image.is_file():
            raise UserError(f"{frame.image}: missing image for {label_path.name}")
        frames.append(frame)
    if not frames:
        raise UserError(f"{gt_dir}: no *{LABEL_SUFFIX} files found")
    return frames


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map label ids (0..33) to train ids (0..18, 255 for ignored) with the cityscapesscripts table."""
    return CITYSCAPES.train_id_of[label_ids]


class Cityscapes(SemanticDataset):
    name = "cityscapes"
    title = "Cityscapes fine annotations (19 evaluated classes, cityscapesscripts' label table)"
    splits = ("train", "val", "test")
    layout = "leftImg8bit/<split>/<city>/*_leftImg8bit.png and gtFine/<split>/<city>/*_gtFine_{labelIds,instanceIds}.png"
    citation = "Cordts et al., CVPR 2016; label table: cityscapesscripts.helpers.labels"
    native_size = (1024, 2048)
    labels = CITYSCAPES
    default_pred_ids = "label"  # cityscapesscripts' convention: predictions hold label ids 0..33
    prediction_pattern = "{name}*.png"

    def frames(self, root: Path, split: str, require_images: bool = True) -> list[SemanticFrame]:
        # the whole of `frames`: find_frames checks the root and the split's folder itself (also for the synthetic
        # scenes' trees, whose splits are whatever was generated)
        return find_frames(root, split, require_images)

    def read_label(self, frame: SemanticFrame) -> np.ndarray:
        label_ids = read_png(frame.label)
        if label_ids.dtype != np.uint8 or int(label_ids.max()) >= CITYSCAPES.num_ids:
            raise UserError(f"{frame.label}: ground truth has label id {int(label_ids.max())} outside 0..{CITYSCAPES.num_ids - 1}")
        return label_ids

    def ground_truth_files(self, root: Path):
        return (path for path in (root / "gtFine").rglob("*") if path.is_file())

    def prediction_key(self, file_name: str) -> str:
        """<city>_<seq>_<frame> at the start of the name, the pattern cityscapesscripts' getPrediction searches for."""
        match = _FRAME_KEY.match(file_name)
        return match.group(1) if match else file_name


def read_frame(frame: SemanticFrame, with_image: bool = True) -> SemanticSample:
    """Decode a Cityscapes frame, checking sizes and label ids."""
    return CITYSCAPES_DATASET.read(frame, with_image)


CITYSCAPES_DATASET = register_dataset(Cityscapes())
