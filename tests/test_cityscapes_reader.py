"""The Cityscapes tree reader: frames, train ids from cityscapesscripts' table, errors."""

from __future__ import annotations

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import labels as cs_labels

from alignbench.bench.data.cityscapes import CityscapesDataset, find_frames, label_ids_to_train_ids
from alignbench.bench.errors import UserError


def test_train_ids_follow_cityscapesscripts():
    for label in cs_labels:
        if label.id < 0:
            continue
        expected = label.trainId if 0 <= label.trainId < 255 else 255
        assert label_ids_to_train_ids(np.array([label.id], np.uint8))[0] == expected, label.name


def test_dataset_yields_image_train_label_and_instance_maps(small_tree):
    dataset = CityscapesDataset(small_tree, "val")
    assert len(dataset) == 4
    sample = dataset[0]
    assert sample.image.shape == (64, 128, 3) and sample.image.dtype == np.uint8
    assert sample.label_ids.shape == sample.train_ids.shape == sample.instance_ids.shape == (64, 128)
    np.testing.assert_array_equal(sample.train_ids, label_ids_to_train_ids(sample.label_ids))
    assert sample.instance_ids.max() > 24000  # person / vehicle instances
    assert set(np.unique(sample.train_ids)) <= set(range(19)) | {255}


def test_transform_is_applied(small_tree):
    dataset = CityscapesDataset(small_tree, "train", transform=lambda s: s.train_ids.sum())
    assert isinstance(dataset[1], (int, np.integer))


def test_missing_files_are_named(small_tree, tmp_path):
    import shutil

    root = tmp_path / "cs"
    shutil.copytree(small_tree, root)
    frame = find_frames(root, "val")[0]
    frame.image.unlink()
    with pytest.raises(UserError, match="missing image"):
        find_frames(root, "val")
    assert len(find_frames(root, "val", require_images=False)) == 4
    frame.instance_ids.unlink()
    with pytest.raises(UserError, match=f"{frame.instance_ids}: missing instanceIds"):
        find_frames(root, "val", require_images=False)
    with pytest.raises(UserError, match="Cityscapes root folder not found"):
        find_frames(tmp_path / "nothing", "val")
