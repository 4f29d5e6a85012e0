"""COCO export of a Cityscapes-layout tree (vs cityscapesscripts' createPanopticImgs) and the COCO readers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from alignbench.bench.data.cityscapes import find_frames, read_frame
from alignbench.bench.data.coco import (
    CategoryTable,
    CocoDetectionDataset,
    CocoPanopticDataset,
    coco_paths,
    export_coco,
    panoptic_from_instance_ids,
    read_panoptic_png,
    write_panoptic_png,
)
from alignbench.bench.errors import UserError
from alignbench.bench.io import write_png
from alignbench.bench.reference import cityscapes_create_panoptic
from alignbench.metrics.coco import decode_segmentation
from alignbench.metrics.labels import CITYSCAPES

THING_IDS = [24, 25, 26, 27, 28, 31, 32, 33]


@pytest.fixture(scope="module")
def exported(small_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("coco")
    return {split: export_coco(small_tree, out, split) for split in ("train", "val")}


def test_panoptic_export_equals_create_panoptic_imgs(small_tree, exported, tmp_path):
    cityscapes_create_panoptic(small_tree / "gtFine", tmp_path, "val")
    theirs = json.loads((tmp_path / "cityscapes_panoptic_val.json").read_text())
    ours = json.loads(exported["val"].panoptic_json.read_text())
    assert [c["id"] for c in ours["categories"]] == [c["id"] for c in theirs["categories"]]
    for mine, reference in zip(ours["categories"], theirs["categories"]):
        assert {k: mine[k] for k in ("id", "name", "isthing", "supercategory")} == {
            k: reference[k] for k in ("id", "name", "isthing", "supercategory")
        }
    frame_of = {image["id"]: image["frame"] for image in ours["images"]}
    theirs_by_frame = {a["image_id"]: a for a in theirs["annotations"]}
    assert sorted(theirs_by_frame) == sorted(frame_of.values())
    crowd_segments = 0
    for annotation in ours["annotations"]:
        reference = theirs_by_frame[frame_of[annotation["image_id"]]]
        assert annotation["segments_info"] == reference["segments_info"]
        assert annotation["file_name"] == reference["file_name"]
        ours_map = read_panoptic_png(exported["val"].panoptic_dir / annotation["file_name"])
        theirs_map = read_panoptic_png(tmp_path / "cityscapes_panoptic_val" / reference["file_name"])
        np.testing.assert_array_equal(ours_map, theirs_map)
        crowd_segments += sum(s["iscrowd"] for s in annotation["segments_info"])
    assert crowd_segments >= 4  # every synthetic scene has a crowd region


def test_instances_json_holds_the_thing_segments(small_tree, exported):
    data = json.loads(exported["val"].instances_json.read_text())
    panoptic = json.loads(exported["val"].panoptic_json.read_text())
    assert [c["id"] for c in data["categories"]] == THING_IDS
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
    frames = {f.name: f for f in find_frames(small_tree, "val")}
    segments_of = {a["image_id"]: a["segments_info"] for a in panoptic["annotations"]}
    for image in data["images"]:
        instance_ids = read_frame(frames[image["frame"]], with_image=False).instance_ids
        annotations = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        things = [s for s in segments_of[image["id"]] if s["category_id"] in THING_IDS]
        assert len(annotations) == len(things) > 0
        for annotation, segment in zip(annotations, things):
            mask = decode_segmentation(annotation["segmentation"], image["height"], image["width"])
            np.testing.assert_array_equal(mask.astype(bool), instance_ids == segment["id"])
            assert annotation["area"] == int(mask.sum()) == segment["area"]
            assert annotation["bbox"] == list(mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask))))
            # crowd regions are thing-class pixels with the bare class id (< 1000) in instanceIds
            assert annotation["iscrowd"] == int(segment["id"] < 1000)
        assert any(a["iscrowd"] for a in annotations) and any(not a["iscrowd"] for a in annotations)


def test_ignored_classes_become_void_and_bad_ids_are_rejected():
    instance_ids = np.array([[7, 7, 1, 24], [26001, 26001, 29000, 4]], np.uint16)  # 1, 29 (caravan), 4 ignored
    segment_map, segments = panoptic_from_instance_ids(instance_ids)
    np.testing.assert_array_equal(segment_map, [[7, 7, 0, 24], [26001, 26001, 0, 0]])
    assert segments == [
        {"id": 7, "category_id": 7, "area": 2, "bbox": [0, 0, 2, 1], "iscrowd": 0},
        {"id": 24, "category_id": 24, "area": 1, "bbox": [3, 0, 1, 1], "iscrowd": 1},
        {"id": 26001, "category_id": 26, "area": 2, "bbox": [0, 1, 2, 1], "iscrowd": 0},
    ]
    with pytest.raises(ValueError, match="label id 40"):
        panoptic_from_instance_ids(np.array([[40000]], np.uint16))


def test_panoptic_png_round_trip_uses_all_three_channels(tmp_path):
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 2**24 - 1, 123456]], np.int64)
    write_panoptic_png(tmp_path / "p.png", ids)
    np.testing.assert_array_equal(read_panoptic_png(tmp_path / "p.png"), ids)
    write_png(tmp_path / "grey.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(UserError, match="grey.png: expected an 8-bit RGB panoptic PNG"):
        read_panoptic_png(tmp_path / "grey.png")


def test_detection_dataset_yields_model_targets(small_tree, exported):
    dataset = CocoDetectionDataset(exported["val"].instances_json, exported["val"].image_dir)
    assert len(dataset) == 4 and dataset.categories.ids == tuple(THING_IDS) and dataset.categories.num_classes == 8
    sample = dataset[0]
    n = len(sample.boxes)
    assert sample.image.shape == (64, 128, 3) and sample.image.dtype == np.uint8
    assert n > 0 and sample.masks.shape == (n, 64, 128) and not sample.iscrowd.any()  # crowds left out by default
    np.testing.assert_array_equal(dataset.categories.category_ids_of(sample.labels), sample.category_ids)
    assert sample.labels.min() >= 1 and sample.labels.max() <= 8
    for box, mask in zip(sample.boxes, sample.masks):  # xyxy boxes bound the masks exactly
        rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        np.testing.assert_array_equal(box, [columns[0], rows[0], columns[-1] + 1, rows[-1] + 1])
    with_crowd = CocoDetectionDataset(exported["val"].instances_json, exported["val"].image_dir, include_crowd=True, with_masks=False)[0]
    assert with_crowd.iscrowd.sum() >= 1 and len(with_crowd.boxes) == n + with_crowd.iscrowd.sum() and with_crowd.masks is None
    image, target = sample.to_torch()
    assert tuple(image.shape) == (3, 64, 128) and float(image.max()) <= 1.0
    assert target["boxes"].shape == (n, 4) and target["labels"].dtype.is_floating_point is False
    assert tuple(target["masks"].shape) == (n, 64, 128)


def test_panoptic_dataset_and_targets(small_tree, exported):
    export = exported["val"]
    dataset = CocoPanopticDataset(export.panoptic_json, export.panoptic_dir, export.image_dir)
    assert len(dataset) == 4 and dataset.things.ids == tuple(THING_IDS) and dataset.stuff.num_classes == 11
    sample = dataset[1]
    frame = find_frames(small_tree, "val")[1]
    expected_map, expected_segments = panoptic_from_instance_ids(read_frame(frame, with_image=False).instance_ids)
    np.testing.assert_array_equal(sample.segment_map, expected_map)
    assert sample.segments_info == expected_segments and sample.image.shape == (64, 128, 3)
    semantic = sample.semantic_map(dataset.semantic_labels())
    label_ids = read_frame(frame, with_image=False).label_ids
    stuff = np.isin(label_ids, dataset.stuff.ids)
    np.testing.assert_array_equal(semantic[stuff], dataset.stuff.labels_of(label_ids[stuff]))
    assert (semantic[np.isin(label_ids, THING_IDS)] == 0).all()
    assert (semantic[~CITYSCAPES.evaluated[label_ids]] == 255).all()
    boxes, category_ids, masks, iscrowd = sample.thing_instances()
    assert len(boxes) == len(masks) == len(category_ids) > 0 and not iscrowd.any()
    assert set(category_ids) <= set(THING_IDS)


def test_category_table_maps_both_ways():
    table = CategoryTable.from_coco([{"id": 33}, {"id": 24}, {"id": 26}])
    assert table.ids == (24, 26, 33)
    np.testing.assert_array_equal(table.labels_of([33, 24]), [3, 1])
    np.testing.assert_array_equal(table.category_ids_of([1, 2, 3]), [24, 26, 33])
    with pytest.raises(ValueError):
        table.labels_of([25])


def test_cli_data_coco_writes_both_splits_and_names_bad_input(cli, small_tree, tmp_path):
    result = cli("data", "coco", "--root", small_tree, "--out", tmp_path / "out", "--split", "train,val")
    assert result.returncode == 0, result.stderr
    for split in ("train", "val"):
        paths = coco_paths(tmp_path / "out", split)
        assert paths["instances_json"].is_file() and paths["panoptic_json"].is_file()
        assert len(list(paths["panoptic_dir"].glob("*_gtFine_panoptic.png"))) == (2 if split == "train" else 4)
    missing = cli("data", "coco", "--root", tmp_path / "nowhere", "--out", tmp_path / "x")
    assert missing.returncode == 2 and "nowhere" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    no_split = cli("data", "coco", "--root", small_tree, "--out", tmp_path / "x", "--split", "test")
    assert no_split.returncode == 2 and "gtFine/test" in no_split.stderr


def test_cli_data_coco_names_a_bad_instance_file(cli, small_tree, tmp_path):
    import shutil

    root = tmp_path / "tree"
    shutil.copytree(small_tree / "gtFine" / "val", root / "gtFine" / "val")
    victim = sorted((root / "gtFine" / "val").rglob("*_instanceIds.png"))[0]
    write_png(victim, np.full((64, 128), 50000, np.uint16))
    result = cli("data", "coco", "--root", root, "--out", tmp_path / "out")
    assert result.returncode == 2 and victim.name in result.stderr and "label id 50" in result.stderr
    victim.write_bytes(b"not a png")
    result = cli("data", "coco", "--root", root, "--out", tmp_path / "out")
    assert result.returncode == 2 and victim.name in result.stderr and "not a PNG" in result.stderr


def test_readers_name_bad_files(exported, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="bad.json: malformed JSON"):
        CocoDetectionDataset(bad, exported["val"].image_dir)
    data = json.loads(exported["val"].instances_json.read_text())
    data["annotations"][0]["category_id"] = 99
    bad.write_text(json.dumps(data))
    with pytest.raises(UserError, match="bad.json: annotations\\[0\\] has unknown category id 99"):
        CocoDetectionDataset(bad, exported["val"].image_dir)
    with pytest.raises(UserError, match="image folder not found"):
        CocoPanopticDataset(exported["val"].panoptic_json, exported["val"].panoptic_dir, tmp_path / "none")
