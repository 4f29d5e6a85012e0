"""Label tables the semantic metrics are defined over.

Two kinds, one class (`LabelSpec`):

* Cityscapes (`CITYSCAPES`), from cityscapesscripts' own table: label ids 0..33, of which 19 are evaluated,
  with categories and instance classes (iIoU). The table itself is never re-typed here: names, ids, train
  ids, categories, `hasInstances`, `ignoreInEval` and colours all come from `cityscapesscripts.helpers.labels`.
  The only numbers copied are the average instance sizes that weight iIoU, which live in the evaluation module
  that must not be imported at run time (it calls `np.in1d`, removed in NumPy 2.4).
* A plain class list (`class_table`): ids 0..C-1 are the evaluated classes (= train ids) and id C stands for
  every ignored value. Any dataset's labels map onto it (ADE20K's "reduce zero label", VOC's 255, CamVid's
  void); it has no categories and no instance classes, so iIoU and category scores are not defined on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

IGNORE_TRAIN_ID = 255

# `args.avgClassSize` in cityscapesscripts 2.3.0, evaluation/evalPixelLevelSemanticLabeling.py: the mean
# instance size (pixels) per class on Cityscapes, used to weight instance pixels in iIoU.
CITYSCAPES_AVG_CLASS_SIZE = {
    "bicycle": 4672.3249222261,
    "caravan": 36771.8241758242,
    "motorcycle": 6298.7200839748,
    "rider": 3930.4788056518,
    "bus": 35732.1511111111,
    "train": 67583.7075812274,
    "car": 12794.0202738185,
    "person": 3462.4756337644,
    "truck": 27855.1264367816,
    "trailer": 16926.9763313609,
}


@dataclass(frozen=True, eq=False)
class LabelSpec:
    """A label table indexed by label id (0..num_ids-1), with the evaluation rules' inputs.

    `categories` keeps the category order of the source table, which fixes the order in which category
    scores are listed and averaged.
    """

    names: tuple[str, ...]
    category_of: tuple[str, ...]
    evaluated: np.ndarray  # bool by label id: not ignoreInEval
    has_instances: np.ndarray  # bool by label id
    train_id_of: np.ndarray  # uint8 by label id, 255 = ignored
    colors: np.ndarray  # uint8 (num_ids, 3) RGB
    avg_class_size: dict[str, float]
    categories: tuple[str, ...]
    instance_category_ids: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def num_ids(self) -> int:
        return len(self.names)

    @cached_property
    def classes(self) -> tuple[str, ...]:
        """The evaluated class names in train-id order (index = train id): what models predict."""
        return tuple(self.names[i] for i in sorted(self.evaluated_ids, key=lambda i: self.train_id_of[i]))

    @cached_property
    def class_colors(self) -> np.ndarray:
        """uint8 (classes, 3) RGB colour of each class, in train-id order."""
        return self.colors[self.label_id_of_train_id[: self.num_train_ids]]

    @property
    def defines_instance_scores(self) -> bool:
        """Whether iIoU is defined: some evaluated class has instances (Cityscapes: person, car, ...)."""
        return bool((self.has_instances & self.evaluated).any())

    @property
    def defines_categories(self) -> bool:
        """Whether category scores are defined (Cityscapes' flat, human, vehicle, ...)."""
        return bool(self.categories)

    @cached_property
    def evaluated_ids(self) -> np.ndarray:
        """Label ids that are scored, in label-id order (the 19 Cityscapes classes)."""
        return np.flatnonzero(self.evaluated)

    @cached_property
    def num_train_ids(self) -> int:
        return int(self.evaluated.sum())

    @cached_property
    def label_id_of_train_id(self) -> np.ndarray:
        """uint8 lookup of size 256: train id -> label id; 255 -> the first label with train id 255.

        This mirrors cityscapesscripts' `trainId2label` (built from the reversed table, so the first label
        listed wins): train id 255 maps to 'unlabeled' (id 0), an ignored id. Unused entries hold 255.
        """
        lookup = np.full(256, 255, dtype=np.uint8)
        for label_id in reversed(range(self.num_ids)):
            lookup[self.train_id_of[label_id]] = label_id
        return lookup

    @cached_property
    def valid_train_ids(self) -> np.ndarray:
        """bool lookup of size 256: which train ids a prediction may contain (0..18 and 255)."""
        valid = np.zeros(256, dtype=bool)
        valid[self.train_id_of] = True
        return valid

    @cached_property
    def category_index(self) -> np.ndarray:
        """int by label id: position of its category in `categories`."""
        return np.array([self.categories.index(c) for c in self.category_of], dtype=np.int64)

    @cached_property
    def avg_size_by_id(self) -> np.ndarray:
        """float64 by label id: average instance size, NaN for classes without one."""
        return np.array([self.avg_class_size.get(name, np.nan) for name in self.names], dtype=np.float64)

    @cached_property
    def same_instance_category(self) -> np.ndarray:
        """bool (num_ids, num_ids): [c, p] is True when c's category is an instance category holding p.

        cityscapesscripts counts a prediction as a category-level true positive on an instance of class
        c when the predicted id is any label id of c's category (ignored ids such as caravan included).
        """
        table = np.zeros((self.num_ids, self.num_ids), dtype=bool)
        for ids in self.instance_category_ids.values():
            members = np.isin(np.arange(self.num_ids), ids)
            for class_id in ids:
                table[class_id] = members
        return table


def _cityscapes_spec() -> LabelSpec:
    from cityscapesscripts.helpers.labels import category2labels, labels

    by_id = {label.id: label for label in labels if label.id >= 0}
    ids = range(max(by_id) + 1)
    if sorted(by_id) != list(ids):
        raise RuntimeError("cityscapesscripts label ids are not contiguous from 0")
    # A category counts for instance-level scores when every label with a non-negative id in it has
    # instances; its ids include labels ignored in evaluation (generateInstanceStats in cityscapesscripts).
    instance_categories = {}
    for category, members in category2labels.items():
        member_ids = [label.id for label in members if label.id >= 0]
        if all(by_id[i].hasInstances for i in member_ids):
            instance_categories[category] = tuple(member_ids)
    return LabelSpec(
        names=tuple(by_id[i].name for i in ids),
        category_of=tuple(by_id[i].category for i in ids),
        evaluated=np.array([not by_id[i].ignoreInEval for i in ids]),
        has_instances=np.array([by_id[i].hasInstances for i in ids]),
        train_id_of=np.array(
            [by_id[i].trainId if 0 <= by_id[i].trainId < 255 else IGNORE_TRAIN_ID for i in ids], dtype=np.uint8
        ),
        colors=np.array([by_id[i].color for i in ids], dtype=np.uint8),
        avg_class_size=dict(CITYSCAPES_AVG_CLASS_SIZE),
        categories=tuple(category2labels.keys()),
        instance_category_ids=instance_categories,
    )


CITYSCAPES = _cityscapes_spec()


def default_palette(count: int) -> np.ndarray:
    """uint8 (count, 3) RGB colours: PASCAL VOC's colour map (the devkit's `VOClabelcolormap.m`: the bits of
    the index spread over the high bits of R, G and B), which is VOC's own palette and a fair default for
    any class list that states none."""
    colors = np.zeros((count, 3), dtype=np.uint8)
    for index in range(count):
        value, shift = index, 7
        while value:
            for channel in range(3):
                colors[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return colors


def class_table(
    names: tuple[str, ...] | list[str],
    palette: np.ndarray | list | None = None,
    ignored_name: str = "ignored",
    ignored_color: tuple[int, int, int] = (0, 0, 0),
) -> LabelSpec:
    """The label table of a plain class list (module docstring): ids 0..C-1 are the classes, in train-id order,
    and id C is every ignored value (train id 255). `palette`: (C, 3) RGB, default `default_palette`."""
    names = tuple(str(name) for name in names)
    if len(names) < 1:
        raise ValueError("a class table needs at least one class")
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise ValueError(f"class {duplicate!r} is listed twice")
    if len(names) > 254:
        raise ValueError(f"{len(names)} classes: at most 254 fit the uint8 label maps the metrics use")
    if ignored_name in names:
        raise ValueError(f"{ignored_name!r} names a class; choose another name for the ignored id")
    colors = default_palette(len(names)) if palette is None else np.asarray(palette)
    if colors.shape != (len(names), 3) or colors.min(initial=0) < 0 or colors.max(initial=0) > 255:
        raise ValueError(f"palette: expected {len(names)} RGB triples of 0..255, got shape {colors.shape}")
    count = len(names)
    return LabelSpec(
        names=names + (ignored_name,),
        category_of=("",) * (count + 1),
        evaluated=np.array([True] * count + [False]),
        has_instances=np.zeros(count + 1, dtype=bool),
        train_id_of=np.array(list(range(count)) + [IGNORE_TRAIN_ID], dtype=np.uint8),
        colors=np.concatenate([colors.astype(np.uint8), np.asarray([ignored_color], dtype=np.uint8)]),
        avg_class_size={},
        categories=(),
    )
