"""The Cityscapes tree reader: frames, train ids from cityscapesscripts' table, errors."""

from __future__ import annotations

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import labels as cs_labels

from alignbench.bench.data.catalog import SemanticSplit
from alignbench.bench.data.cityscapes import CITYSCAPES_DATASET, find_frames, label_ids_to_train_ids
from alignbench.bench.errors import UserError


def test_train_ids_follow_cityscapesscripts():
    for label in cs_labels:
        if label.id < 0:
            continue
        expected = label.trainId if 0 <= label.trainId < 255 else 255
        assert label_ids_to_train_ids(np.array([label.id], np.uint8))[0] == expected, label.name


def test_dataset_yields_image_train_label_and_instance_maps(small_tree):
    dataset = SemanticSplit.of(CITYSCAPES_DATASET, small_tree, "val")
    assert len(dataset) == 4
    sample = dataset[0]
    assert sample.image.shape == (64, 128, 3) and sample.image.dtype == np.uint8
    assert sample.label_ids.shape == sample.train_ids.shape == sample.instance_ids.shape == (64, 128)
    np.testing.assert_array_equal(sample.train_ids, label_ids_to_train_ids(sample.label_ids))
    assert sample.instance_ids.max() > 24000  # person / vehicle instances
    assert set(np.unique(sample.train_ids)) <= set(range(19)) | {255}


def _known_scene(root):
    """One hand-written 4x6 frame: road (label 7, train 0) on the left, a car instance 26001 (train 13) in the
    middle, a crowd of persons (bare class id 24, train 11) and an ignored 'ego vehicle' pixel (label 1)."""
    from alignbench.bench.io import write_png

    label_ids = np.array([[7, 7, 26, 26, 24, 24],
                          [7, 7, 26, 26, 24, 24],
                          [7, 7, 7, 7, 11, 11],
                          [1, 7, 7, 7, 11, 11]], np.uint8)
    instance_ids = label_ids.astype(np.uint16)
    instance_ids[0:2, 2:4] = 26001
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    stem = "aachen_000000_000019"
    write_png(root / "gtFine" / "val" / "aachen" / f"{stem}_gtFine_labelIds.png", label_ids)
    write_png(root / "gtFine" / "val" / "aachen" / f"{stem}_gtFine_instanceIds.png", instance_ids)
    write_png(root / "leftImg8bit" / "val" / "aachen" / f"{stem}_leftImg8bit.png", image)
    return label_ids, instance_ids, image


def test_a_known_scene_reads_back_exactly(tmp_path):
    label_ids, instance_ids, image = _known_scene(tmp_path)
    dataset = SemanticSplit.of(CITYSCAPES_DATASET, tmp_path, "val")
    assert len(dataset) == 1 and dataset.frames[0].name == "aachen_000000_000019" and dataset.frames[0].city == "aachen"
    sample = dataset[0]
    assert sample.name == "aachen_000000_000019"
    assert sample.image.dtype == np.uint8 and sample.image.shape == (4, 6, 3)
    np.testing.assert_array_equal(sample.image, image)  # RGB order, as written
    assert sample.label_ids.dtype == np.uint8
    np.testing.assert_array_equal(sample.label_ids, label_ids)
    assert sample.instance_ids.dtype == np.int32  # widened from the 16-bit PNG
    np.testing.assert_array_equal(sample.instance_ids, instance_ids)
    assert sorted(np.unique(sample.instance_ids).tolist()) == [1, 7, 11, 24, 26001]
    # train ids: road 0, car 13, person 11, building (11) 2, ego vehicle ignored (255)
    expected = np.array([[0, 0, 13, 13, 11, 11],
                         [0, 0, 13, 13, 11, 11],
                         [0, 0, 0, 0, 2, 2],
                         [255, 0, 0, 0, 2, 2]], np.uint8)
    np.testing.assert_array_equal(sample.train_ids, expected)


def test_transform_is_applied(tmp_path):
    _known_scene(tmp_path)
    dataset = SemanticSplit.of(CITYSCAPES_DATASET, tmp_path, "val", transform=lambda s: int((s.train_ids == 13).sum()))
    assert dataset[0] == 4  # the car's four pixels


def test_missing_files_are_named(small_tree, tmp_path):
    import shutil

    root = tmp_path / "cs"
    shutil.copytree(small_tree, root)
    frame = find_frames(root, "val")[0]
    frame.image.unlink()
    with pytest.raises(UserError, match="missing image"):
        find_frames(root, "val")
    assert len(find_frames(root, "val", require_images=False)) == 4
    frame.instances.unlink()
    with pytest.raises(UserError, match=f"{frame.instances}: missing instanceIds"):
        find_frames(root, "val", require_images=False)
    with pytest.raises(UserError, match="Cityscapes root folder not found"):
        find_frames(tmp_path / "nothing", "val")
