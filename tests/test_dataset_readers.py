"""The readers of ADE20K, COCO-Stuff (164K, 10K), PASCAL-Context (59, 60), PASCAL VOC 2012 (+ SBD) and LIP.

Each section writes a tiny tree in the dataset's official layout (and in mmsegmentation's converted layout) under
tmp_path and checks frame names per split, decoded label ids / train ids against hand-computed values, the errors
for missing and unknown splits and for stored values the layout never holds, and reading without images.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from alignbench.bench.data import ade20k, coco_stuff, lip, pascal_context, voc
from alignbench.bench.data.catalog import get_dataset
from alignbench.bench.errors import UserError
from alignbench.bench.io import write_png
from alignbench.metrics.labels import default_palette

H, W = 8, 10


def write_jpg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((H, W, 3), 90, np.uint8))


def label_map(values, dtype=np.uint8) -> np.ndarray:
    """An HxW map whose first pixels hold `values` and whose other pixels hold values[0]."""
    array = np.full(H * W, values[0], dtype=dtype)
    array[: len(values)] = values
    return array.reshape(H, W)


def expected(values, mapping: dict[int, int]) -> np.ndarray:
    """The map `label_map(values)` would decode to, value by value through `mapping`."""
    return label_map([mapping[value] for value in values])


def write_label(path: Path, values) -> None:
    write_png(path, label_map(values))


def write_names(path: Path, names) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}\n" for name in names))


def names_of(frames) -> list[str]:
    return [frame.name for frame in frames]


@pytest.mark.parametrize(("name", "dataset"), [
    ("ade20k", ade20k.ADE20K_DATASET), ("coco_stuff164k", coco_stuff.COCO_STUFF164K),
    ("coco_stuff10k", coco_stuff.COCO_STUFF10K), ("pascal_context", pascal_context.PASCAL_CONTEXT),
    ("pascal_context60", pascal_context.PASCAL_CONTEXT60), ("voc2012", voc.VOC2012_DATASET), ("lip", lip.LIP_DATASET),
])
def test_registered(name, dataset):
    assert get_dataset(name) is dataset
    assert dataset.name == name and dataset.native_size is None
    assert dataset.describe()["num_classes"] == len(dataset.labels.classes)


# --- ADE20K -----------------------------------------------------------------------------------------------

ADE_VALUES = [0, 1, 150, 13]  # other, wall, flag, person
ADE_LABEL = {0: 150, 1: 0, 150: 149, 13: 12}
ADE_TRAIN = {0: 255, 1: 0, 150: 149, 13: 12}


@pytest.fixture
def ade_root(tmp_path) -> Path:
    base = tmp_path / "ADEChallengeData2016"
    for folder, stems in (("training", ["ADE_train_00000002", "ADE_train_00000001"]), ("validation", ["ADE_val_00000001"])):
        for stem in stems:
            write_jpg(base / "images" / folder / f"{stem}.jpg")
            write_label(base / "annotations" / folder / f"{stem}.png", ADE_VALUES)
    return base


def test_ade20k_frames_and_labels(ade_root):
    dataset = get_dataset("ade20k")
    assert len(dataset.labels.classes) == 150
    assert (dataset.labels.classes[0], dataset.labels.classes[12], dataset.labels.classes[149]) == ("wall", "person", "flag")
    frames = dataset.frames(ade_root, "train")
    assert names_of(frames) == ["ADE_train_00000001", "ADE_train_00000002"]
    assert names_of(dataset.frames(ade_root, "val")) == ["ADE_val_00000001"]
    assert names_of(dataset.frames(ade_root.parent, "val")) == ["ADE_val_00000001"]  # the folder holding ADEChallengeData2016
    sample = dataset.read(frames[0])
    assert sample.image.shape == (H, W, 3)
    np.testing.assert_array_equal(sample.label_ids, expected(ADE_VALUES, ADE_LABEL))
    np.testing.assert_array_equal(sample.train_ids, expected(ADE_VALUES, ADE_TRAIN))


def test_ade20k_errors(ade_root):
    dataset = get_dataset("ade20k")
    with pytest.raises(UserError, match="--split test: ade20k has the splits train, val"):
        dataset.frames(ade_root, "test")
    write_label(ade_root / "annotations" / "validation" / "ADE_val_00000001.png", [3, 200])
    with pytest.raises(UserError, match=r"ADE_val_00000001\.png: label value 200 is not one of ade20k's \(0\.\.150, 255\)"):
        dataset.read(dataset.frames(ade_root, "val")[0])
    for path in (ade_root / "annotations" / "validation").iterdir():
        path.unlink()
    (ade_root / "annotations" / "validation").rmdir()
    with pytest.raises(UserError, match=r"annotations/validation: ade20k split 'val' not found .*splits found: train$"):
        dataset.frames(ade_root, "val")
    (ade_root / "annotations" / "training").rename(ade_root / "annotations" / "elsewhere")
    with pytest.raises(UserError, match=r"annotations/training: ade20k split 'train' not found \(expected [^;]*\)$"):
        dataset.frames(ade_root, "train")  # neither split on disk: one error, no endless probing


def test_ade20k_without_images(ade_root):
    dataset = get_dataset("ade20k")
    for path in (ade_root / "images" / "training").iterdir():
        path.unlink()
    with pytest.raises(UserError, match=r"ADE_train_00000001\.jpg: missing image"):
        dataset.frames(ade_root, "train")
    frames = dataset.frames(ade_root, "train", require_images=False)
    assert names_of(frames) == ["ADE_train_00000001", "ADE_train_00000002"]
    np.testing.assert_array_equal(dataset.read(frames[1], with_image=False).train_ids, expected(ADE_VALUES, ADE_TRAIN))
    assert len(list(dataset.ground_truth_files(ade_root))) == 3


# --- COCO-Stuff ---------------------------------------------------------------------------------------------

# stuffthingmaps: COCO id - 1; 11 = COCO id 12 (street sign, unused), 91 = id 92 (banner), 181 = id 182 (wood)
COCO_RAW_VALUES = [0, 11, 91, 181, 255, 12]
COCO_RAW_TRAIN = {0: 0, 11: 255, 91: 80, 181: 170, 255: 255, 12: 11}


def test_coco_stuff_classes():
    dataset = get_dataset("coco_stuff164k")
    classes = dataset.labels.classes
    assert len(classes) == 171 and classes is not None
    assert (classes[0], classes[11], classes[79], classes[80], classes[170]) == ("person", "stop sign", "toothbrush", "banner", "wood")
    assert "street sign" not in classes and "hair brush" not in classes
    assert get_dataset("coco_stuff10k").labels.classes == classes


@pytest.fixture
def coco164k_root(tmp_path) -> Path:
    for folder, stems in (("train2017", ["000000000009", "000000000025"]), ("val2017", ["000000000139"])):
        for stem in stems:
            write_jpg(tmp_path / "images" / folder / f"{stem}.jpg")
            write_label(tmp_path / "annotations" / folder / f"{stem}.png", COCO_RAW_VALUES)
    return tmp_path


def test_coco_stuff164k_official(coco164k_root):
    dataset = get_dataset("coco_stuff164k")
    assert names_of(dataset.frames(coco164k_root, "train")) == ["000000000009", "000000000025"]
    (frame,) = dataset.frames(coco164k_root, "val")
    assert frame.name == "000000000139"
    sample = dataset.read(frame)
    np.testing.assert_array_equal(sample.train_ids, expected(COCO_RAW_VALUES, COCO_RAW_TRAIN))
    np.testing.assert_array_equal(sample.label_ids, expected(COCO_RAW_VALUES, {**COCO_RAW_TRAIN, 11: 171, 255: 171}))
    write_label(coco164k_root / "annotations" / "val2017" / "000000000139.png", [0, 182])
    with pytest.raises(UserError, match=r"000000000139\.png: label value 182 is not one of coco_stuff164k's"):
        dataset.read(frame)
    with pytest.raises(UserError, match="--split test"):
        dataset.frames(coco164k_root, "test")


def test_coco_stuff164k_mmseg_train_ids(coco164k_root):
    dataset = get_dataset("coco_stuff164k")
    folder = coco164k_root / "annotations" / "train2017"
    values = [0, 11, 170, 255]  # label ids 0..170 and 255 (tools/dataset_converters/coco_stuff164k.py)
    for stem in ("000000000009", "000000000025"):
        write_label(folder / f"{stem}_labelTrainIds.png", values)
    frames = dataset.frames(coco164k_root, "train")
    assert names_of(frames) == ["000000000009", "000000000025"]  # the raw maps beside them are not frames
    assert frames[0].label.name == "000000000009_labelTrainIds.png"
    assert frames[0].image == coco164k_root / "images" / "train2017" / "000000000009.jpg"
    np.testing.assert_array_equal(dataset.read(frames[0]).train_ids, expected(values, {0: 0, 11: 11, 170: 170, 255: 255}))
    write_label(folder / "000000000025_labelTrainIds.png", [0, 171])
    with pytest.raises(UserError, match=r"000000000025_labelTrainIds\.png: label value 171 is not one of coco_stuff164k's \(0\.\.170, 255\)"):
        dataset.read(frames[1])


def test_coco_stuff164k_missing_split_and_no_images(coco164k_root):
    dataset = get_dataset("coco_stuff164k")
    for path in (coco164k_root / "annotations" / "val2017").iterdir():
        path.unlink()
    (coco164k_root / "annotations" / "val2017").rmdir()
    with pytest.raises(UserError, match=r"annotations/val2017: coco_stuff164k split 'val' not found.*splits found: train"):
        dataset.frames(coco164k_root, "val")
    for path in (coco164k_root / "images" / "train2017").iterdir():
        path.unlink()
    assert len(dataset.frames(coco164k_root, "train", require_images=False)) == 2


# COCO-Stuff 10K .mat S: 0 unlabeled, k = COCO id k (12 street sign: unused, 92 banner, 182 wood)
COCO10K_VALUES = [0, 1, 12, 92, 182, 13]
COCO10K_TRAIN = {0: 255, 1: 0, 12: 255, 92: 80, 182: 170, 13: 11}


@pytest.fixture
def coco10k_root(tmp_path) -> Path:
    names = {"train": ["COCO_train2014_000000000077", "COCO_train2014_000000000009"], "test": ["COCO_train2014_000000000036"]}
    for split, stems in names.items():
        write_names(tmp_path / "imageLists" / f"{split}.txt", stems)
        for stem in stems:
            write_jpg(tmp_path / "images" / f"{stem}.jpg")
            (tmp_path / "annotations").mkdir(exist_ok=True)
            savemat(tmp_path / "annotations" / f"{stem}.mat", {"S": label_map(COCO10K_VALUES), "captions": np.array(["a"])})
    return tmp_path


def test_coco_stuff10k_official(coco10k_root):
    dataset = get_dataset("coco_stuff10k")
    frames = dataset.frames(coco10k_root, "train")
    assert names_of(frames) == ["COCO_train2014_000000000009", "COCO_train2014_000000000077"]
    assert frames[0].label == coco10k_root / "annotations" / "COCO_train2014_000000000009.mat"
    (frame,) = dataset.frames(coco10k_root, "test")
    sample = dataset.read(frame)
    np.testing.assert_array_equal(sample.train_ids, expected(COCO10K_VALUES, COCO10K_TRAIN))
    np.testing.assert_array_equal(sample.label_ids, expected(COCO10K_VALUES, {**COCO10K_TRAIN, 0: 171, 12: 171}))
    savemat(frame.label, {"S": label_map([0, 183])})
    with pytest.raises(UserError, match=r"COCO_train2014_000000000036\.mat: label value 183 outside 0\.\.182"):
        dataset.read(frame)
    savemat(frame.label, {"labels": np.zeros((2, 2))})
    with pytest.raises(UserError, match=r"COCO_train2014_000000000036\.mat: no variable 'S'"):
        dataset.read(frame)
    frame.label.write_bytes(b"not a MATLAB file")
    with pytest.raises(UserError, match=r"COCO_train2014_000000000036\.mat: cannot read MATLAB file"):
        dataset.read(frame)
    with pytest.raises(UserError, match="--split val: coco_stuff10k has the splits train, test"):
        dataset.frames(coco10k_root, "val")
    (coco10k_root / "imageLists" / "test.txt").unlink()
    with pytest.raises(UserError, match=r"imageLists/test\.txt: coco_stuff10k split 'test' not found.*splits found: train"):
        dataset.frames(coco10k_root, "test")


def test_coco_stuff10k_mmseg_layout(coco10k_root):
    dataset = get_dataset("coco_stuff10k")
    values = [0, 1, 81, 171, 255]  # the converter's 0 = unlabeled, 1..171 = classes (read with reduce_zero_label)
    for stem in ("COCO_train2014_000000000077", "COCO_train2014_000000000009"):
        write_label(coco10k_root / "annotations" / "train2014" / f"{stem}_labelTrainIds.png", values)
    frames = dataset.frames(coco10k_root, "train", require_images=False)
    assert names_of(frames) == ["COCO_train2014_000000000009", "COCO_train2014_000000000077"]
    assert frames[0].image == coco10k_root / "images" / "train2014" / "COCO_train2014_000000000009.jpg"
    with pytest.raises(UserError, match=r"images/train2014/COCO_train2014_000000000009\.jpg: missing image"):
        dataset.frames(coco10k_root, "train")
    sample = dataset.read(frames[1], with_image=False)
    np.testing.assert_array_equal(sample.train_ids, expected(values, {0: 255, 1: 0, 81: 80, 171: 170, 255: 255}))
    assert names_of(dataset.frames(coco10k_root, "test")) == ["COCO_train2014_000000000036"]  # test2014/ absent: the .mat layout


# --- PASCAL-Context -----------------------------------------------------------------------------------------

# the 59 classes' ids among the 459 of the release's labels.txt (mmsegmentation tools/dataset_converters/pascal_context.py)
CONTEXT_FULL_IDS = [2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115, 144,
                    158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349, 354,
                    355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458]
CONTEXT_PNG_VALUES = [0, 1, 37, 59, 255]  # background, aeroplane, person, wood, padding
CONTEXT_FRAMES = {"train": ["2008_000002", "2008_000003"], "val": ["2008_000008"]}


def voc_root_variants(parent: Path, year: str) -> list[Path]:
    return [parent, parent / "VOCdevkit", parent / "VOCdevkit" / year]


@pytest.fixture
def context_root(tmp_path) -> Path:
    year = tmp_path / "VOCdevkit" / "VOC2010"
    for split, names in CONTEXT_FRAMES.items():
        write_names(year / "ImageSets" / "SegmentationContext" / f"{split}.txt", names)
        for name in names:
            write_jpg(year / "JPEGImages" / f"{name}.jpg")
            write_label(year / "SegmentationClassContext" / f"{name}.png", CONTEXT_PNG_VALUES)
    return tmp_path


def test_pascal_context_mmseg_layout(context_root):
    context59, context60 = get_dataset("pascal_context"), get_dataset("pascal_context60")
    assert len(context59.labels.classes) == 59 and len(context60.labels.classes) == 60
    assert context59.labels.classes[36] == "person" and context60.labels.classes[:2] == ("background", "aeroplane")
    for root in voc_root_variants(context_root, "VOC2010"):
        assert names_of(context59.frames(root, "train")) == CONTEXT_FRAMES["train"]
    (frame,) = context59.frames(context_root, "val")
    np.testing.assert_array_equal(context59.read(frame).train_ids, expected(CONTEXT_PNG_VALUES, {0: 255, 1: 0, 37: 36, 59: 58, 255: 255}))
    np.testing.assert_array_equal(context59.read(frame).label_ids, expected(CONTEXT_PNG_VALUES, {0: 59, 1: 0, 37: 36, 59: 58, 255: 59}))
    np.testing.assert_array_equal(context60.read(frame).train_ids, expected(CONTEXT_PNG_VALUES, {0: 0, 1: 1, 37: 37, 59: 59, 255: 255}))
    write_label(frame.label, [0, 60])
    for dataset in (context59, context60):
        with pytest.raises(UserError, match=rf"2008_000008\.png: label value 60 is not one of {dataset.name}'s"):
            dataset.read(frame)
    with pytest.raises(UserError, match="--split test"):
        context60.frames(context_root, "test")


def test_pascal_context_missing_split_and_no_images(context_root):
    dataset = get_dataset("pascal_context")
    year = context_root / "VOCdevkit" / "VOC2010"
    (year / "ImageSets" / "SegmentationContext" / "val.txt").unlink()
    with pytest.raises(UserError, match=r"SegmentationContext/val\.txt: pascal_context split 'val' not found.*splits found: train"):
        dataset.frames(context_root, "val")
    for path in (year / "JPEGImages").iterdir():
        path.unlink()
    assert names_of(dataset.frames(context_root, "train", require_images=False)) == CONTEXT_FRAMES["train"]
    (context_root / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty/VOCdevkit/VOC2010/SegmentationClassContext: pascal_context split 'train' not found"):
        dataset.frames(context_root / "empty", "train")  # no VOC2010 tree at all: the error names the folder expected


# the release's LabelMap: 0 and labels outside the 59 are background; 2 aeroplane, 284 person, 397 table, 458 wood
CONTEXT_MAT_VALUES = [0, 1, 2, 284, 397, 458, 459]
CONTEXT_MAT_59 = {0: 255, 1: 255, 2: 0, 284: 36, 397: 49, 458: 58, 459: 255}
CONTEXT_MAT_60 = {0: 0, 1: 0, 2: 1, 284: 37, 397: 50, 458: 59, 459: 0}


@pytest.fixture
def context_official_root(tmp_path) -> Path:
    year = tmp_path / "VOCdevkit" / "VOC2010"
    lines = {1: "accordion", 3: "air conditioner", 459: "wool", **dict(zip(CONTEXT_FULL_IDS, pascal_context.CLASSES_59))}
    year.mkdir(parents=True)
    (year / "labels.txt").write_text("".join(f"{key}: {name}\n" for key, name in sorted(lines.items())))
    (year / "trainval").mkdir()
    for split, names in (("train", ["2008_000002", "2008_000003"]), ("val", ["2008_000007"])):
        write_names(year / "ImageSets" / "Main" / f"{split}.txt", names)
        for name in names:
            write_jpg(year / "JPEGImages" / f"{name}.jpg")
            savemat(year / "trainval" / f"{name}.mat", {"LabelMap": label_map(CONTEXT_MAT_VALUES, np.uint16)})
    return tmp_path


def test_pascal_context_official_mat_layout(context_official_root):
    context59, context60 = get_dataset("pascal_context"), get_dataset("pascal_context60")
    for root in voc_root_variants(context_official_root, "VOC2010"):
        assert names_of(context60.frames(root, "train")) == ["2008_000002", "2008_000003"]
    (frame,) = context59.frames(context_official_root, "val")
    assert frame.label.suffix == ".mat"
    np.testing.assert_array_equal(context59.read(frame).train_ids, expected(CONTEXT_MAT_VALUES, CONTEXT_MAT_59))
    np.testing.assert_array_equal(context60.read(frame).train_ids, expected(CONTEXT_MAT_VALUES, CONTEXT_MAT_60))
    savemat(frame.label, {"LabelMap": label_map([0, 460], np.uint16)})
    with pytest.raises(UserError, match=r"2008_000007\.mat: label value 460 outside 0\.\.459"):
        context59.read(frame)
    labels_txt = context_official_root / "VOCdevkit" / "VOC2010" / "labels.txt"
    labels_txt.rename(labels_txt.with_name("moved.txt"))
    with pytest.raises(UserError, match=r"VOC2010/labels\.txt: PASCAL-Context's labels\.txt .* not found"):
        context59.read(frame)


def test_pascal_context_official_labels_txt_checked(context_official_root):
    year = context_official_root / "VOCdevkit" / "VOC2010"
    text = (year / "labels.txt").read_text().replace("397: table\n", "")
    (year / "trainval" / "labels.txt").write_text(text)  # inside trainval/ is a place it may be, too
    (year / "labels.txt").unlink()
    (frame,) = get_dataset("pascal_context").frames(context_official_root, "val")
    with pytest.raises(UserError, match=r"trainval/labels\.txt: no line for the PASCAL-Context class\(es\) table"):
        get_dataset("pascal_context").read(frame)


# --- PASCAL VOC 2012 (+ SBD) --------------------------------------------------------------------------------

VOC_VALUES = [0, 1, 20, 255, 15]  # background, aeroplane, tvmonitor, void, person
VOC_TRAIN = {0: 0, 1: 1, 20: 20, 255: 255, 15: 15}
VOC_SPLITS = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]}


def write_palette_png(path: Path, values) -> None:
    """A label PNG as the devkit stores it: a palette image whose indices are the class ids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label_map(values))
    image.putpalette(default_palette(256).flatten().tolist())
    assert image.mode == "P"
    image.save(path)


@pytest.fixture
def voc_root(tmp_path) -> Path:
    year = tmp_path / "VOCdevkit" / "VOC2012"
    for split, names in VOC_SPLITS.items():
        write_names(year / "ImageSets" / "Segmentation" / f"{split}.txt", names)
        for name in names:
            write_jpg(year / "JPEGImages" / f"{name}.jpg")
            write_palette_png(year / "SegmentationClass" / f"{name}.png", VOC_VALUES)
    write_names(year / "ImageSets" / "Segmentation" / "trainval.txt", VOC_SPLITS["train"] + VOC_SPLITS["val"])
    return tmp_path


def test_voc_splits_and_labels(voc_root):
    dataset = get_dataset("voc2012")
    assert len(dataset.labels.classes) == 21
    assert dataset.labels.classes[15] == "person" and dataset.labels.classes[20] == "tvmonitor"
    np.testing.assert_array_equal(dataset.labels.class_colors, default_palette(21))
    for root in voc_root_variants(voc_root, "VOC2012"):
        assert names_of(dataset.frames(root, "train")) == VOC_SPLITS["train"]
        assert names_of(dataset.frames(root, "trainval")) == ["2007_000032", "2007_000033", "2007_000039"]
        assert dataset.training_split(root) == "train"
    (frame,) = dataset.frames(voc_root, "val")
    sample = dataset.read(frame)
    np.testing.assert_array_equal(sample.train_ids, expected(VOC_VALUES, VOC_TRAIN))
    np.testing.assert_array_equal(sample.label_ids, expected(VOC_VALUES, {**VOC_TRAIN, 255: 21}))
    write_palette_png(frame.label, [0, 21])
    with pytest.raises(UserError, match=r"2007_000033\.png: label value 21 is not one of voc2012's \(0\.\.20, 255\)"):
        dataset.read(frame)
    with pytest.raises(UserError, match="--split test: voc2012 has the splits train, val, trainval, train_aug"):
        dataset.frames(voc_root, "test")
    with pytest.raises(UserError, match=r"VOC2012/SegmentationClassAug: voc2012 split 'train_aug' not found.*splits found: train, val, trainval"):
        dataset.frames(voc_root, "train_aug")
    (voc_root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(UserError, match=r"Segmentation/val\.txt: voc2012 split 'val' not found"):
        dataset.frames(voc_root, "val")


def test_voc_without_images(voc_root):
    dataset = get_dataset("voc2012")
    for path in (voc_root / "VOCdevkit" / "VOC2012" / "JPEGImages").iterdir():
        path.unlink()
    with pytest.raises(UserError, match=r"JPEGImages/2007_000032\.jpg: missing image"):
        dataset.frames(voc_root, "train")
    frames = dataset.frames(voc_root, "train", require_images=False)
    np.testing.assert_array_equal(dataset.read(frames[0], with_image=False).train_ids, expected(VOC_VALUES, VOC_TRAIN))


def test_voc_train_aug_mmseg(voc_root):
    dataset = get_dataset("voc2012")
    year = voc_root / "VOCdevkit" / "VOC2012"
    aug_values = [0, 7, 12]
    write_names(year / "ImageSets" / "Segmentation" / "aug.txt", ["2008_000045", "2007_000061"])
    for name in ("2008_000045", "2007_000061"):
        write_jpg(year / "JPEGImages" / f"{name}.jpg")
        write_label(year / "SegmentationClassAug" / f"{name}.png", aug_values)  # 8-bit maps (voc_aug.py)
    assert dataset.training_split(voc_root) == "train_aug"
    frames = dataset.frames(voc_root, "train_aug")
    assert names_of(frames) == ["2007_000032", "2007_000039", "2007_000061", "2008_000045"]
    assert frames[0].label.parent.name == "SegmentationClass" and frames[2].label.parent.name == "SegmentationClassAug"
    np.testing.assert_array_equal(dataset.read(frames[2]).train_ids, expected(aug_values, {0: 0, 7: 7, 12: 12}))
    np.testing.assert_array_equal(dataset.read(frames[0]).train_ids, expected(VOC_VALUES, VOC_TRAIN))


def write_sbd(dataset_dir: Path, train, val, segmentations: dict[str, list[int]], images=()) -> None:
    write_names(dataset_dir / "train.txt", train)
    write_names(dataset_dir / "val.txt", val)
    (dataset_dir / "cls").mkdir(parents=True)
    for name, values in segmentations.items():
        struct = {"Segmentation": label_map(values), "Boundaries": np.zeros((1, 1)), "CategoriesPresent": np.array([[1]])}
        savemat(dataset_dir / "cls" / f"{name}.mat", {"GTcls": struct})
    for name in images:
        write_jpg(dataset_dir / "img" / f"{name}.jpg")


def test_voc_train_aug_sbd(voc_root):
    dataset = get_dataset("voc2012")
    year = voc_root / "VOCdevkit" / "VOC2012"
    sbd = voc_root / "benchmark_RELEASE" / "dataset"  # beside VOCdevkit
    sbd_values = [0, 3, 19]
    # SBD train lists a VOC train image and the VOC val image; SBD val lists one image VOC's JPEGImages lacks
    write_sbd(sbd, ["2007_000032", "2008_000045", "2007_000033"], ["2009_000001"],
              {name: sbd_values for name in ("2007_000032", "2007_000033", "2008_000045", "2009_000001")}, images=["2009_000001"])
    write_jpg(year / "JPEGImages" / "2008_000045.jpg")
    for root in voc_root_variants(voc_root, "VOC2012"):  # found beside VOCdevkit, from inside and outside the root
        assert dataset.training_split(root) == "train_aug"
        assert names_of(dataset.frames(root, "train_aug")) == ["2007_000032", "2007_000039", "2008_000045", "2009_000001"]
    frames = {frame.name: frame for frame in dataset.frames(voc_root, "train_aug")}
    assert frames["2007_000032"].label == year / "SegmentationClass" / "2007_000032.png"  # VOC's label wins
    assert frames["2008_000045"].label == sbd / "cls" / "2008_000045.mat"
    assert frames["2009_000001"].image == sbd / "img" / "2009_000001.jpg"
    np.testing.assert_array_equal(dataset.read(frames["2009_000001"]).train_ids, expected(sbd_values, {0: 0, 3: 3, 19: 19}))
    np.testing.assert_array_equal(dataset.read(frames["2007_000032"]).train_ids, expected(VOC_VALUES, VOC_TRAIN))
    files = {path.name for path in dataset.ground_truth_files(voc_root)}
    assert "2008_000045.mat" in files and "2007_000033.png" in files
    assert "2008_000045.mat" not in {path.name for path in dataset.ground_truth_files(voc_root / "VOCdevkit")}
    assert dataset.fingerprint(voc_root / "VOCdevkit") != dataset.fingerprint(voc_root)
    savemat(sbd / "cls" / "2008_000045.mat", {"GTcls": {"Segmentation": label_map([0, 30])}})
    with pytest.raises(UserError, match=r"2008_000045\.mat: label value 30 is not one of voc2012's"):
        dataset.read(frames["2008_000045"])
    savemat(sbd / "cls" / "2008_000045.mat", {"GTcls": {"Boundaries": label_map([0])}})
    with pytest.raises(UserError, match=r"2008_000045\.mat: GTcls is not SBD's struct with a Segmentation field"):
        dataset.read(frames["2008_000045"])


def test_voc_sbd_inside_root(voc_root):
    dataset = get_dataset("voc2012")
    root = voc_root / "VOCdevkit" / "VOC2012"
    write_sbd(root / "benchmark_RELEASE" / "dataset", ["2010_000002"], ["2007_000033"], {"2010_000002": [0, 1]})
    assert dataset.training_split(root) == "train_aug"
    frames = dataset.frames(root, "train_aug", require_images=False)
    assert names_of(frames) == ["2007_000032", "2007_000039", "2010_000002"]
    with pytest.raises(UserError, match=r"JPEGImages/2010_000002\.jpg: missing image for 2010_000002\.mat"):
        dataset.frames(root, "train_aug")


# --- LIP -----------------------------------------------------------------------------------------------------

LIP_VALUES = [0, 5, 19, 255, 13]  # Background, UpperClothes, Right-shoe, padding, Face
LIP_TRAIN = {0: 0, 5: 5, 19: 19, 255: 255, 13: 13}


def write_lip(root: Path, images: str, labels: str, names) -> None:
    for name in names:
        write_jpg(root / images / f"{name}.jpg")
        write_label(root / labels / f"{name}.png", LIP_VALUES)


def test_lip_official_layout(tmp_path):
    dataset = get_dataset("lip")
    assert len(dataset.labels.classes) == 20
    assert dataset.labels.classes[0] == "Background" and dataset.labels.classes[19] == "Right-shoe"
    write_lip(tmp_path, "TrainVal_images/train_images", "TrainVal_parsing_annotations/train_segmentations",
              ["77_471474", "100_1234567", "36_1066"])
    write_lip(tmp_path, "TrainVal_images/val_images", "TrainVal_parsing_annotations/val_segmentations", ["100034_483681"])
    write_names(tmp_path / "TrainVal_images" / "train_id.txt", ["77_471474", "100_1234567"])  # the id list picks the split
    assert names_of(dataset.frames(tmp_path, "train")) == ["100_1234567", "77_471474"]
    (frame,) = dataset.frames(tmp_path, "val")  # no val_id.txt: every label map
    assert frame.image == tmp_path / "TrainVal_images" / "val_images" / "100034_483681.jpg"
    sample = dataset.read(frame)
    np.testing.assert_array_equal(sample.train_ids, expected(LIP_VALUES, LIP_TRAIN))
    np.testing.assert_array_equal(sample.label_ids, expected(LIP_VALUES, {**LIP_TRAIN, 255: 20}))
    write_label(frame.label, [0, 20])
    with pytest.raises(UserError, match=r"100034_483681\.png: label value 20 is not one of lip's \(0\.\.19, 255\)"):
        dataset.read(frame)
    with pytest.raises(UserError, match="--split test: lip has the splits train, val"):
        dataset.frames(tmp_path, "test")


def test_lip_mmseg_layout_and_errors(tmp_path):
    dataset = get_dataset("lip")
    write_lip(tmp_path, "train_images", "train_segmentations", ["1000_1234574", "10_1"])
    assert names_of(dataset.frames(tmp_path, "train")) == ["1000_1234574", "10_1"]
    np.testing.assert_array_equal(dataset.read(dataset.frames(tmp_path, "train")[1]).train_ids, expected(LIP_VALUES, LIP_TRAIN))
    with pytest.raises(UserError, match=r"TrainVal_parsing_annotations/val_segmentations: lip split 'val' not found.*splits found: train"):
        dataset.frames(tmp_path, "val")
    for path in (tmp_path / "train_images").iterdir():
        path.unlink()
    with pytest.raises(UserError, match=r"train_images/1000_1234574\.jpg: missing image"):
        dataset.frames(tmp_path, "train")
    assert len(dataset.frames(tmp_path, "train", require_images=False)) == 2
    assert sorted(path.name for path in dataset.ground_truth_files(tmp_path)) == ["1000_1234574.png", "10_1.png"]
