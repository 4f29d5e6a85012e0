"""Reader for a Cityscapes tree (the real dataset or one written by `alignbench data synth`).

Layout: leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png and
gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_{labelIds,instanceIds}.png. Label ids map to train ids
through cityscapesscripts' label table (metrics.labels.CITYSCAPES).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alignbench.bench.errors import UserError
from alignbench.bench.io import read_png
from alignbench.metrics.labels import CITYSCAPES

LABEL_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
IMAGE_SUFFIX = "_leftImg8bit.png"


@dataclass(frozen=True)
class CityscapesFrame:
    """The files of one annotated frame; `name` is <city>_<seq>_<frame>."""

    name: str
    city: str
    label_ids: Path
    instance_ids: Path
    image: Path


@dataclass
class CityscapesSample:
    """One decoded frame: RGB image, label ids, train ids (255 = ignore) and instanceIds."""

    name: str
    image: np.ndarray
    label_ids: np.ndarray
    train_ids: np.ndarray
    instance_ids: np.ndarray


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
            city=city,
            label_ids=label_path,
            instance_ids=label_path.with_name(name + INSTANCE_SUFFIX),
            image=root / "leftImg8bit" / split / city / (name + IMAGE_SUFFIX),
        )
        if not frame.instance_ids.is_file():
            raise UserError(f"{frame.instance_ids}: missing instanceIds file for {label_path.name}")
        if require_images and not frame.image.is_file():
            raise UserError(f"{frame.image}: missing image for {label_path.name}")
        frames.append(frame)
    if not frames:
        raise UserError(f"{gt_dir}: no *{LABEL_SUFFIX} files found")
    return frames


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map label ids (0..33) to train ids (0..18, 255 for ignored) with the cityscapesscripts table."""
    return CITYSCAPES.train_id_of[label_ids]


def read_frame(frame: CityscapesFrame, with_image: bool = True) -> CityscapesSample:
    """Decode a frame's files, checking sizes and label ids."""
    label_ids = read_png(frame.label_ids)
    instance_ids = read_png(frame.instance_ids).astype(np.int32)
    if label_ids.dtype != np.uint8 or int(label_ids.max()) >= CITYSCAPES.num_ids:
        raise UserError(f"{frame.label_ids}: label id {int(label_ids.max())} outside 0..{CITYSCAPES.num_ids - 1}")
    if instance_ids.shape != label_ids.shape:
        raise UserError(f"{frame.instance_ids}: size {instance_ids.shape} differs from {frame.label_ids.name} {label_ids.shape}")
    image = np.zeros(label_ids.shape + (3,), np.uint8)
    if with_image:
        image = read_png(frame.image, channels=3)
        if image.shape[:2] != label_ids.shape:
            raise UserError(f"{frame.image}: size {image.shape[:2]} differs from {frame.label_ids.name} {label_ids.shape}")
    return CityscapesSample(frame.name, image, label_ids, label_ids_to_train_ids(label_ids), instance_ids)


class CityscapesDataset:
    """Map-style dataset over a Cityscapes split (works with torch's DataLoader; imports no torch).

    `transform`, when given, is applied to each CityscapesSample and its result returned instead.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[[CityscapesSample], object] | None = None,
        with_images: bool = True,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.frames = find_frames(self.root, split, require_images=with_images)
        self.transform = transform
        self.with_images = with_images

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int):
        sample = read_frame(self.frames[index], with_image=self.with_images)
        return self.transform(sample) if self.transform else sample
