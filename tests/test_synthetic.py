"""The synthetic scene generator: exact Cityscapes layout, determinism, and the content alignment needs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from alignbench.bench.data.synthetic import MIN_STROKE_PX, SynthSpec, generate_scene, write_dataset
from alignbench.metrics.labels import CITYSCAPES

THING_IDS = [i for i in CITYSCAPES.evaluated_ids if CITYSCAPES.has_instances[i]]
# unlabeled, ego vehicle, rectification border, out of roi, static, dynamic, ground, parking, rail track,
# guard rail, polegroup: drawn in every scene, though things may hide a few of them
IGNORED_IDS_EXPECTED = {0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 18}


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(0, "train", index, (256, 512)) for index in range(4)]


def test_every_scene_shows_all_19_classes_and_the_ignore_regions(scenes):
    seen = set()
    for scene in scenes:
        present = set(np.unique(scene.label_ids).tolist())
        assert set(CITYSCAPES.evaluated_ids.tolist()) <= present
        assert len(IGNORED_IDS_EXPECTED & present) >= 8
        seen |= present
    assert IGNORED_IDS_EXPECTED <= seen


def test_instance_ids_follow_cityscapes_encoding(scenes):
    for scene in scenes:
        ids = scene.instance_ids.astype(np.int64)
        labels = scene.label_ids.astype(np.int64)
        instance = ids >= 1000
        np.testing.assert_array_equal(ids[instance] // 1000, labels[instance])  # id*1000+k
        np.testing.assert_array_equal(ids[~instance], labels[~instance])  # stuff and crowd: bare label id
        assert CITYSCAPES.has_instances[labels[instance]].all()


def test_crowd_regions_and_many_small_instances(scenes):
    for scene in scenes:
        ids, areas = np.unique(scene.instance_ids, return_counts=True)
        things = ids >= 1000
        assert things.sum() >= 10
        small = areas[things] < 32 * 32  # COCO "small"
        assert small.sum() >= 5
        crowd = np.isin(scene.instance_ids, THING_IDS)  # a thing class without an instance number
        assert crowd.sum() > 0


def _pixels_in_row_runs_of_at_least(mask: np.ndarray, width: int) -> int:
    """How many pixels of `mask` lie in a row run of `width` or more pixels (a morphological opening)."""
    return int(cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((1, width), np.uint8)).sum())


def test_thin_structures(scenes):
    """Poles are thin (most pole pixels lie in a row run under 2 x the floor) but never thinner than the
    MIN_STROKE_PX floor that keeps them learnable at small sizes."""
    floor = int(MIN_STROKE_PX)
    for scene in scenes:
        pole = (scene.label_ids == 17).astype(np.uint8)
        assert pole.sum() > 0
        assert _pixels_in_row_runs_of_at_least(pole, 2 * floor) < 0.2 * pole.sum()
        assert _pixels_in_row_runs_of_at_least(pole, floor) > 0.5 * pole.sum()


def test_small_renders_keep_riders_and_two_wheelers_apart_by_appearance():
    """Generator 2: riders wear high-visibility vests, bicycles are orange, motorcycles purple."""
    scene = generate_scene(0, "val", 0, (128, 256))
    image = scene.image.astype(np.float32)
    means = {name: image[scene.label_ids == CITYSCAPES.names.index(name)].mean(axis=0) for name in ("bicycle", "motorcycle")}
    assert means["bicycle"][0] > means["bicycle"][2] + 60  # orange: red over blue
    assert means["motorcycle"][2] > means["motorcycle"][1] + 30  # purple: blue over green


def test_classes_have_texture_not_flat_colour(scenes):
    image = scenes[0].image.astype(np.float32)
    for label_id in CITYSCAPES.evaluated_ids:
        mask = scenes[0].label_ids == label_id
        if mask.sum() < 50:
            continue
        assert image[mask].std(axis=0).mean() > 4.0, CITYSCAPES.names[label_id]


def test_same_seed_same_scene_and_index_independent_of_count():
    first = generate_scene(3, "val", 2, (64, 128))
    again = generate_scene(3, "val", 2, (64, 128))
    other = generate_scene(4, "val", 2, (64, 128))
    for name in ("image", "label_ids", "instance_ids"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.label_ids, other.label_ids)


def test_written_tree_has_exact_cityscapes_layout(tmp_path):
    spec = SynthSpec(n_train=2, n_val=1, size=(64, 128), seed=1)
    write_dataset(tmp_path / "a", spec, progress=False)
    write_dataset(tmp_path / "b", SynthSpec(n_train=3, n_val=1, size=(64, 128), seed=1), progress=False)
    root = tmp_path / "a"
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    assert names == [
        "gtFine/train/synthtrain/synthtrain_000000_000019_gtFine_color.png",
        "gtFine/train/synthtrain/synthtrain_000000_000019_gtFine_instanceIds.png",
        "gtFine/train/synthtrain/synthtrain_000000_000019_gtFine_labelIds.png",
        "gtFine/train/synthtrain/synthtrain_000000_000038_gtFine_color.png",
        "gtFine/train/synthtrain/synthtrain_000000_000038_gtFine_instanceIds.png",
        "gtFine/train/synthtrain/synthtrain_000000_000038_gtFine_labelIds.png",
        "gtFine/val/synthval/synthval_000000_000019_gtFine_color.png",
        "gtFine/val/synthval/synthval_000000_000019_gtFine_instanceIds.png",
        "gtFine/val/synthval/synthval_000000_000019_gtFine_labelIds.png",
        "leftImg8bit/train/synthtrain/synthtrain_000000_000019_leftImg8bit.png",
        "leftImg8bit/train/synthtrain/synthtrain_000000_000038_leftImg8bit.png",
        "leftImg8bit/val/synthval/synthval_000000_000019_leftImg8bit.png",
    ]
    from PIL import Image

    stem = root / "gtFine/train/synthtrain/synthtrain_000000_000019_gtFine"
    assert Image.open(f"{stem}_labelIds.png").mode == "L"
    assert Image.open(f"{stem}_instanceIds.png").mode in ("I;16", "I")
    assert np.array(Image.open(f"{stem}_instanceIds.png")).max() > 255  # 16-bit content
    assert Image.open(f"{stem}_color.png").mode == "RGBA"
    assert Image.open(root / "leftImg8bit/train/synthtrain/synthtrain_000000_000019_leftImg8bit.png").mode == "RGB"
    colour = np.array(Image.open(f"{stem}_color.png"))[..., :3]
    labels = np.array(Image.open(f"{stem}_labelIds.png"))
    np.testing.assert_array_equal(colour, CITYSCAPES.colors[labels])
    # deterministic bytes; scene 1 does not depend on how many scenes were written
    for name in names:
        if name.startswith(("gtFine/train", "leftImg8bit/train")):
            assert (root / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert json.loads((root / "synth.json").read_text())["n_train"] == 2


def test_cli_synth_refuses_a_foreign_folder_and_reuses_its_own(cli, tmp_path):
    out = tmp_path / "data"
    args = ("data", "synth", "--out", out, "--n-train", "1", "--n-val", "1", "--size", "64x128")
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert (out / "gtFine" / "val" / "synthval").is_dir()
    assert cli(*args).returncode == 0  # same dataset: nothing to do
    different = cli(*args[:-1], "64x96")
    assert different.returncode == 2 and "holds a different synthetic dataset" in different.stderr
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    refused = cli("data", "synth", "--out", foreign, "--n-train", "1", "--n-val", "1", "--size", "64x128")
    assert refused.returncode == 2 and "not an empty folder" in refused.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"
