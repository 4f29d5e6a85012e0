"""The dataset catalog: every dataset the harness reads, as one registered object each.

A dataset (`Dataset`) says what it is and how to read it: its name, the tasks it serves, its label table
(class names, ignored ids, palette: a metrics.labels.LabelSpec), the splits of its official layout and the
reader of each, how its stored labels map to the table's ids, its native image size (where the boundary
bands' widths are stated) and a fingerprint of its ground truth (results and checkpoints keyed by it are
never reused for other data). Models, metrics, reports and notebooks take their classes from it.

Semantic datasets subclass `SemanticDataset` and implement `split_frames(root, split, require_images)`; one file per dataset
(bench/data/<name>.py) defines it and registers an instance with `register_dataset`: the catalog imports every
module of this package, so adding a dataset is that one file (and its test). A plugin does the same
from outside the package, or describes a folder dataset in one YAML file (bench/data/folder.py).

    from alignbench.bench.data.catalog import get_dataset
    ade = get_dataset("ade20k")
    frames = ade.frames(Path("/data/ADEChallengeData2016"), "val")
    sample = ade.read(frames[0])        # image, label ids of ade.labels, train ids
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alignbench.bench.errors import UserError
from alignbench.bench.io import read_image, read_png
from alignbench.metrics.labels import IGNORE_TRAIN_ID, LabelSpec
from alignbench.tasks import TASKS


@dataclass(frozen=True)
class SemanticFrame:
    """The files of one annotated image. `name` identifies it (the image file's stem, Cityscapes'
    <city>_<seq>_<frame>): predictions are matched by it."""

    name: str
    image: Path
    label: Path
    instances: Path | None = None  # an instance-id map (Cityscapes instanceIds), where the dataset has one


@dataclass
class SemanticSample:
    """One decoded image: RGB image, label ids of the dataset's table, train ids (255 = ignored) and, where the
    dataset has them, instance ids (Cityscapes instanceIds)."""

    name: str
    image: np.ndarray
    label_ids: np.ndarray
    train_ids: np.ndarray
    instance_ids: np.ndarray | None = None


class Dataset:
    """A registered dataset (module docstring). Subclasses set the class attributes and implement the readers
    of their tasks."""

    name: str = ""
    title: str = ""  # one line: what it is, e.g. "ADE20K scene parsing (ADEChallengeData2016)"
    tasks: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()  # the splits its official layout defines
    layout: str = ""  # the folder layout, as a user would write it (shown in errors and `alignbench datasets`)
    citation: str = ""  # where the facts of the layout and the label table come from
    native_size: tuple[int, int] | None = None  # (H, W) of its images; None: sizes vary (each image's own)
    labels: LabelSpec | None = None  # None: the categories come with each copy's annotation files (COCO)
    default_pred_ids: str = "train"  # what `eval semantic` predictions hold unless --pred-ids says

    def training_split(self, root: Path) -> str:
        """The split a model trains on (VOC: SBD's augmented set when present)."""
        return "train"

    def check_root(self, root: Path) -> Path:
        """`root` as a folder, or one UserError naming it and the expected layout."""
        root = Path(root).expanduser()
        if not root.is_dir():
            raise UserError(f"{root}: {self.title or self.name} root folder not found (expected {self.layout})")
        return root

    def fingerprint(self, root: Path) -> str:
        """A short digest of the ground truth under `root` (relative path and size of every annotation file)."""
        files = sorted((path.relative_to(root).as_posix(), path.stat().st_size) for path in self.ground_truth_files(root))
        return hashlib.sha1(json.dumps(files).encode()).hexdigest()[:10]

    def ground_truth_files(self, root: Path) -> Iterable[Path]:
        raise NotImplementedError

    def describe(self) -> dict:
        """What `alignbench datasets --json` prints of it."""
        labels = self.labels
        return {
            "name": self.name, "title": self.title, "tasks": list(self.tasks), "splits": list(self.splits),
            "classes": list(labels.classes) if labels is not None else None,
            "num_classes": labels.num_train_ids if labels is not None else None,
            "native_size": list(self.native_size) if self.native_size else None, "layout": self.layout,
            "citation": self.citation,
        }


class SemanticDataset(Dataset):
    """A semantic segmentation dataset: `frames(root, split)` lists a split's files (its reader: `split_frames`); `read_label` decodes a label
    file into the ids of `labels` (by default a PNG through `label_lut`, the table from stored values to ids)."""

    tasks = ("semantic",)
    label_lut: np.ndarray | None = None  # uint8 (256,): stored value -> label id of `labels`; `INVALID` where none

    INVALID = 255  # in `label_lut`: a stored value the layout never holds (an error when read)
    _probing_splits = False  # set while `missing_split` looks for the splits that are there

    def frames(self, root: Path, split: str, require_images: bool = True) -> list[SemanticFrame]:
        """The annotated frames of a split: a root that is not a folder, or a split the dataset does not define, is
        one error; then the dataset's reader (`split_frames`). Without `require_images` the images need not exist
        (scoring prediction files)."""
        root = self.check_root(root)
        if split not in self.splits:
            raise self.unknown_split(split)
        return self.split_frames(root, split, require_images)

    def split_frames(self, root: Path, split: str, require_images: bool = True) -> list[SemanticFrame]:
        """The reader of a dataset: the frames of `split` (one of `splits`) under `root` (a folder), in a stable order;
        a split that is not on disk is one error naming its folder (`missing_split`)."""
        raise NotImplementedError

    def read_label(self, frame: SemanticFrame) -> np.ndarray:
        """The label ids (of `labels`) of a frame's label file."""
        return self.map_labels(read_png(frame.label), frame.label)

    def map_labels(self, stored: np.ndarray, path: Path, lut: np.ndarray | None = None) -> np.ndarray:
        """Stored label values -> label ids through `label_lut` (or `lut`, for a layout variant that stores other
        values, e.g. mmsegmentation's *_labelTrainIds.png); a value the layout never holds is an error."""
        lut = self.label_lut if lut is None else lut
        if lut is None:
            return stored
        if stored.dtype != np.uint8:
            high = int(stored.max()) if stored.size else 0
            if high > 255:
                raise UserError(f"{path}: label value {high} outside 0..255")
            stored = stored.astype(np.uint8)
        ids = lut[stored]
        if (ids == self.INVALID).any():  # a class table has at most 255 ids, so INVALID is never one of them
            bad = int(stored[ids == self.INVALID][0])
            raise UserError(f"{path}: label value {bad} is not one of {self.name}'s ({self.valid_values(lut)})")
        return ids

    def valid_values(self, lut: np.ndarray | None = None) -> str:
        values = np.flatnonzero((self.label_lut if lut is None else lut) != self.INVALID)
        runs, start = [], None
        for index, value in enumerate(values):
            if start is None:
                start = value
            if index + 1 == len(values) or values[index + 1] != value + 1:
                runs.append(f"{start}" if start == value else f"{start}..{value}")
                start = None
        return ", ".join(runs)

    def read(self, frame: SemanticFrame, with_image: bool = True) -> SemanticSample:
        """Decode a frame: image, label ids, train ids and instance ids, with sizes checked against each other."""
        label_ids = self.read_label(frame)
        if label_ids.ndim != 2:
            raise UserError(f"{frame.label}: expected a single-channel label map, got shape {label_ids.shape}")
        instance_ids = None
        if frame.instances is not None:
            instance_ids = read_png(frame.instances).astype(np.int32)
            if instance_ids.shape != label_ids.shape:
                raise UserError(f"{frame.instances}: size {instance_ids.shape} differs from {frame.label.name} {label_ids.shape}")
        image = np.zeros(label_ids.shape + (3,), np.uint8)
        if with_image:
            image = read_image(frame.image)
            if image.shape[:2] != label_ids.shape:
                raise UserError(f"{frame.image}: size {image.shape[:2]} differs from {frame.label.name} {label_ids.shape}")
        return SemanticSample(frame.name, image, label_ids, self.labels.train_id_of[label_ids], instance_ids)

    prediction_pattern = "{name}.png"  # how `eval semantic` expects the prediction of frame `name` to be named

    def prediction_key(self, file_name: str) -> str:
        """The frame name a prediction file is matched by: its stem (Cityscapes overrides)."""
        return Path(file_name).stem

    def missing_split(self, root: Path, split: str, folder: Path) -> UserError:
        """The one error for a split that is not on disk: it names the folder and the splits that are."""
        present = []
        if not self._probing_splits:  # probing the other splits must not list splits again (recursion)
            self._probing_splits = True
            try:
                present = [name for name in self.splits if name != split and self._has_split(root, name)]
            finally:
                self._probing_splits = False
        found = f"; splits found: {', '.join(present)}" if present else ""
        return UserError(f"{folder}: {self.name} split {split!r} not found (expected {self.layout}){found}")

    def _has_split(self, root: Path, split: str) -> bool:
        try:
            return bool(self.frames(root, split, require_images=False))
        except UserError:
            return False

    def unknown_split(self, split: str) -> UserError:
        return UserError(f"--split {split}: {self.name} has the splits {', '.join(self.splits)}")


class SemanticSplit:
    """Map-style dataset of a semantic dataset's frames (works with torch's DataLoader; imports no torch):
    item i is the decoded SemanticSample of frame i, or `transform` of it."""

    def __init__(self, dataset: SemanticDataset, frames: list[SemanticFrame], with_images: bool = True, transform=None) -> None:
        self.dataset, self.frames, self.with_images, self.transform = dataset, list(frames), with_images, transform

    @classmethod
    def of(cls, dataset: SemanticDataset, root: Path, split: str, **options) -> SemanticSplit:
        """Every frame of `split` under `root`."""
        return cls(dataset, dataset.frames(Path(root), split), **options)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int):
        sample = self.dataset.read(self.frames[index], with_image=self.with_images)
        return self.transform(sample) if self.transform else sample


def paired_frames(image_dir: Path, label_dir: Path, image_suffix: str, label_suffix: str,
                  names: Iterable[str] | None = None, require_images: bool = True) -> list[SemanticFrame]:
    """Frames of every label file `<name><label_suffix>` in `label_dir` (or of the given `names`), each with its
    image `<name><image_suffix>` in `image_dir`; a missing file is an error naming it (an image only with
    `require_images`), and so is a split without any frame."""
    if names is None:
        names = sorted(path.name[: -len(label_suffix)] for path in label_dir.glob(f"*{label_suffix}"))
    frames = []
    for name in names:
        label = label_dir / f"{name}{label_suffix}"
        image = image_dir / f"{name}{image_suffix}"
        if not label.is_file():
            raise UserError(f"{label}: label file not found")
        if require_images and not image.is_file():
            raise UserError(f"{image}: missing image for {label.name}")
        frames.append(SemanticFrame(name, image, label))
    if not frames:
        raise UserError(f"{label_dir}: no label maps (*{label_suffix}) found")
    return frames


def label_lut(mapping: dict[int, int]) -> np.ndarray:
    """A `label_lut` from {stored value: label id}; every other value is INVALID."""
    lut = np.full(256, SemanticDataset.INVALID, dtype=np.uint8)
    for stored, label_id in mapping.items():
        lut[stored] = label_id
    return lut


def reduce_zero_label_lut(num_classes: int) -> np.ndarray:
    """mmsegmentation's `reduce_zero_label` on a plain class table: stored 0 (background / "other") is ignored and
    1..C become label ids 0..C-1; 255 (mmseg's ignore) is ignored too."""
    return label_lut({0: num_classes, IGNORE_TRAIN_ID: num_classes, **{value: value - 1 for value in range(1, num_classes + 1)}})


def identity_lut(num_classes: int, ignored: Iterable[int] = (IGNORE_TRAIN_ID,)) -> np.ndarray:
    """Stored values 0..C-1 are the classes; the `ignored` values are the table's ignored id (C)."""
    return label_lut({**{value: value for value in range(num_classes)}, **{value: num_classes for value in ignored}})


# --- the registry ----------------------------------------------------------------------------------------

_REGISTRY: dict[str, Dataset] = {}
_LOADED = False


def register_dataset(dataset: Dataset, *, replace: bool = False) -> Dataset:
    """Add `dataset` to the catalog under its name (a plugin's own dataset too); returns it."""
    if not dataset.name or not dataset.name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"dataset name {dataset.name!r}: use letters, digits, '-' and '_'")
    unknown = sorted(set(dataset.tasks) - set(TASKS))
    if unknown or not dataset.tasks:
        raise ValueError(f"dataset {dataset.name!r}: tasks must be among {', '.join(TASKS)}, got {list(dataset.tasks)}")
    if dataset.name in _REGISTRY and not replace and _REGISTRY[dataset.name] is not dataset:
        raise ValueError(f"dataset {dataset.name!r} is already registered")
    _REGISTRY[dataset.name] = dataset
    return dataset


def _load_builtin(name: str | None = None) -> None:
    """Import the built-in dataset modules (every module of this package; each registers its datasets when imported),
    once. With `name`, first only the module of that name when there is one (`camvid` lives in bench/data/camvid.py),
    so that `eval semantic` on Cityscapes imports no other reader (its start-up time is benchmarked)."""
    global _LOADED
    if name is not None and name.isidentifier() and importlib.util.find_spec(f"{__package__}.{name}") is not None:
        importlib.import_module(f"{__package__}.{name}")
        if name in _REGISTRY:
            return
    if not _LOADED:
        _LOADED = True
        for module in pkgutil.iter_modules(importlib.import_module(__package__).__path__):
            importlib.import_module(f"{__package__}.{module.name}")


def get_dataset(name: str) -> Dataset:
    """The registered dataset `name`; a UserError listing the known ones otherwise."""
    if name not in _REGISTRY:
        _load_builtin(name)
    if name not in _REGISTRY:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(sorted(_REGISTRY))} (or a dataset file, NAME.yaml)")
    return _REGISTRY[name]


def registered(name: str) -> Dataset | None:
    """The dataset registered as `name`, None when there is none."""
    if name not in _REGISTRY:
        _load_builtin(name)
    return _REGISTRY.get(name)


def list_datasets(task: str | None = None) -> list[Dataset]:
    """Every registered dataset (of one task if given), by name."""
    _load_builtin(None)
    return [dataset for _, dataset in sorted(_REGISTRY.items()) if task is None or task in dataset.tasks]
