"""Your own dataset without code: a folder of images and label maps, described in one YAML file (or in Python).

    # mydata.yaml                            alignbench run-all --suite my_suite.yaml --data mydata.yaml=/data/mine
    name: mydata
    classes: [background, road, car]       # class names in train-id order (label value 0, 1, 2, ...)
    palette: [[0, 0, 0], [128, 64, 128], [0, 0, 142]]   # optional RGB per class (default: VOC's colour map)
    ignore_index: 255                      # optional: the label value that is ignored (default 255)
    reduce_zero_label: false               # optional: true when label 0 is "other" (ignored) and 1..C the classes
    native_size: [512, 1024]               # optional (H, W): where boundary-band widths are stated
    root: .                                # optional: the data folder, relative to this file (--data FILE=ROOT wins)
    splits:
      train:
        images: img/train/*.jpg
        labels: ann/train/{stem}.png        # (a YAML flow mapping {...} would need these quoted)
      val:
        images: img/val/*.jpg
        labels: ann/val/{stem}.png

`images` is a glob relative to the root; `labels` the path of each image's label map, where {stem} is the
image's file name without its extension, {name} the whole file name and {parent} its folder's name. Label maps
are single-channel PNGs holding the class index (mmsegmentation's convention). The file is checked with pydantic
like a suite: a wrong type, an unknown key or a missing field is one line naming the file, line and field.

In Python (a plugin): `register_dataset(FolderDataset("mydata", classes, {"train": ("img/*.jpg", "ann/{stem}.png")}))`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError

from alignbench.bench.config_files import LocatedYaml, StrictSchema
from alignbench.bench.data.catalog import SemanticDataset, SemanticFrame, label_lut, register_dataset, registered
from alignbench.bench.errors import UserError
from alignbench.metrics.labels import class_table

PLACEHOLDERS = ("stem", "name", "parent")


class FolderDataset(SemanticDataset):
    """A dataset of `splits` {split: (image glob, label pattern)} under a root (module docstring)."""

    def __init__(self, name: str, classes, splits: dict[str, tuple[str, str]], *, palette=None, ignore_index: int = 255,
                 reduce_zero_label: bool = False, native_size: tuple[int, int] | None = None, title: str = "",
                 default_root: Path | None = None, source: Path | None = None) -> None:
        self.name = name
        self.labels = class_table(tuple(classes), palette)
        count = len(self.labels.classes)
        offset = 1 if reduce_zero_label else 0
        if not 0 <= ignore_index <= 255 or offset <= ignore_index < count + offset:
            raise ValueError(f"ignore_index {ignore_index}: must be 0..255 and not a class's label value")
        mapping = {value + offset: value for value in range(count)}
        if count + offset > 256:
            raise ValueError(f"{count} classes do not fit 8-bit label maps")
        mapping[ignore_index] = count
        if reduce_zero_label:
            mapping[0] = count
        self.label_lut = label_lut(mapping)
        self.split_patterns = dict(splits)
        self.splits = tuple(splits)
        self.native_size = tuple(native_size) if native_size else None
        self.title = title or f"{name}: {count} classes from a folder dataset"
        self.default_root = default_root
        self.source = source
        first = ", ".join(f"{split}: {images} -> {labels}" for split, (images, labels) in self.split_patterns.items())
        self.layout = first
        self.citation = str(source) if source else "a folder dataset"

    def split_frames(self, root: Path, split: str, require_images: bool = True) -> list[SemanticFrame]:
        images_glob, labels_pattern = self.split_patterns[split]
        images = sorted(path for path in root.glob(images_glob) if path.is_file())
        if not images:
            raise UserError(f"{root / images_glob}: no images match for {self.name} split {split!r}")
        frames, seen = [], {}
        for image in images:
            label = root / labels_pattern.format(stem=image.stem, name=image.name, parent=image.parent.name)
            if not label.is_file():
                raise UserError(f"{label}: label map not found for image {image}")
            if image.stem in seen:
                raise UserError(f"{image}: two images of split {split!r} are named {image.stem} (also {seen[image.stem]}); "
                                "predictions are matched by that name")
            seen[image.stem] = image
            frames.append(SemanticFrame(image.stem, image, label))
        return frames

    def ground_truth_files(self, root: Path):
        return (frame.label for split in self.splits for frame in self.frames(root, split))


class _SplitSchema(StrictSchema):
    images: str = Field(min_length=1)
    labels: str = Field(min_length=1)


class _DatasetSchema(StrictSchema):
    name: str = Field(min_length=1)
    title: str = ""
    classes: list[str] = Field(min_length=1)
    palette: list[list[int]] | None = None
    ignore_index: int = 255
    reduce_zero_label: bool = False
    native_size: list[int] | None = Field(default=None, min_length=2, max_length=2)
    root: str | None = None
    splits: dict[str, _SplitSchema] = Field(min_length=1)


def load_dataset_file(path: str | Path, register: bool = True) -> FolderDataset:
    """Parse and check a dataset file; with `register` it joins the catalog under its name (so that suites and
    `eval semantic --dataset NAME` find it in this process)."""
    path = Path(path).expanduser()
    doc = LocatedYaml.read(path, "dataset")
    if not isinstance(doc.data, dict):
        raise doc.error((), "expected a mapping of dataset fields")
    known = {(): tuple(_DatasetSchema.model_fields), ("splits",): tuple(_SplitSchema.model_fields)}
    try:
        spec = _DatasetSchema.model_validate(doc.data)
    except ValidationError as error:
        raise doc.schema_error(error, known) from None
    if spec.palette is not None and (len(spec.palette) != len(spec.classes) or any(len(c) != 3 for c in spec.palette)):
        raise doc.error(("palette",), f"expected {len(spec.classes)} [R, G, B] triples, one per class")
    if spec.native_size is not None and min(spec.native_size) <= 0:
        raise doc.error(("native_size",), "expected [H, W] with positive integers")
    for split, patterns in spec.splits.items():
        try:
            patterns.labels.format(**{key: "x" for key in PLACEHOLDERS})
        except (KeyError, IndexError, ValueError) as error:
            raise doc.error(("splits", split, "labels"), f"unknown placeholder {error} (use {{stem}}, {{name}} or {{parent}})") from None
    root = (path.parent / spec.root).resolve() if spec.root is not None else path.parent.resolve()
    try:
        dataset = FolderDataset(spec.name, spec.classes, {split: (p.images, p.labels) for split, p in spec.splits.items()},
                                palette=spec.palette, ignore_index=spec.ignore_index, reduce_zero_label=spec.reduce_zero_label,
                                native_size=tuple(spec.native_size) if spec.native_size else None, title=spec.title,
                                default_root=root, source=path.resolve())
    except ValueError as error:
        field = "palette" if "palette" in str(error) else "ignore_index" if "ignore_index" in str(error) else "classes"
        raise doc.error((field,), str(error)) from None
    if register:
        current = registered(dataset.name)
        if current is not None and getattr(current, "source", None) != dataset.source:
            where = getattr(current, "source", None) or "a built-in dataset"
            raise doc.error(("name",), f"{dataset.name!r} is already the name of {where}; choose another name")
        register_dataset(dataset, replace=True)
    return dataset
