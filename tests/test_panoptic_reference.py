"""PQ / SQ / RQ equal cityscapesscripts' evalPanopticSemanticLabeling (panopticapi's rules) to 1e-9."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from alignbench.bench.data.coco import read_panoptic_png, write_panoptic_png
from alignbench.bench.evaluation.panoptic import evaluate_panoptic_files
from alignbench.bench.perf import write_panoptic_benchmark_pairs
from alignbench.bench.reference import cityscapes_panoptic_scores
from alignbench.metrics.panoptic import PanopticAccumulator, PanopticResult

TOLERANCE = 1e-9


def assert_matches_reference(ours: PanopticResult, reference: dict) -> None:
    """Every group and class score within 1e-9; a class skipped by us (NaN) is 0.0 with TP+FP+FN=0 there."""
    for group in ("All", "Things", "Stuff"):
        assert ours.summary[group]["n"] == reference[group]["n"], group
        for key in ("pq", "sq", "rq"):
            assert abs(ours.summary[group][key] - reference[group][key]) <= TOLERANCE, (group, key)
    assert set(ours.per_class) == set(reference["per_class"])
    for category_id, scores in ours.per_class.items():
        theirs = reference["per_class"][category_id]
        for key in ("pq", "sq", "rq"):
            if scores["tp"] + scores["fp"] + scores["fn"] == 0:
                assert math.isnan(scores[key]) and theirs[key] == 0.0
            else:
                assert abs(scores[key] - theirs[key]) <= TOLERANCE, (category_id, key, scores, theirs)


def _fates(gt_map, gt_segments, pred_map, pred_segments) -> dict[str, int]:
    """Brute force, segment by segment: how each predicted segment is scored (to show the data covers the rules)."""
    fates = {"matched": 0, "ignored_void": 0, "ignored_crowd": 0, "false_positive": 0}
    crowd_of = {}
    for segment in gt_segments:
        if segment["iscrowd"]:
            crowd_of[segment["category_id"]] = segment["id"]
    for prediction in pred_segments:
        mask = pred_map == prediction["id"]
        area = int(mask.sum())
        void = int((mask & (gt_map == 0)).sum())
        matched = False
        for segment in gt_segments:
            if segment["iscrowd"] or segment["category_id"] != prediction["category_id"]:
                continue
            gt_mask = gt_map == segment["id"]
            intersection = int((mask & gt_mask).sum())
            matched |= intersection / (area + int(gt_mask.sum()) - intersection - void) > 0.5
        crowd = int((mask & (gt_map == crowd_of.get(prediction["category_id"], -1))).sum())
        if matched:
            fates["matched"] += 1
        elif void / area > 0.5:
            fates["ignored_void"] += 1
        elif (void + crowd) / area > 0.5:
            fates["ignored_crowd"] += 1
        else:
            fates["false_positive"] += 1
    return fates


@pytest.fixture(scope="module", params=[(0, 1.5), (1, 0.5)], ids=["seed0-dense", "seed1-sparse"])
def generated(request, tmp_path_factory):
    seed, density = request.param
    root = tmp_path_factory.mktemp(f"panoptic-{seed}")
    return write_panoptic_benchmark_pairs(root, n=6, size=(128, 256), density=density, seed=seed)


def test_generated_data_exercises_every_rule(generated):
    gt = json.loads(generated["gt_json"].read_text())
    pred = {a["image_id"]: a for a in json.loads(generated["pred_json"].read_text())["annotations"]}
    totals = {"matched": 0, "ignored_void": 0, "ignored_crowd": 0, "false_positive": 0}
    crowds = voids = 0
    for annotation in gt["annotations"]:
        gt_map = read_panoptic_png(generated["gt_dir"] / annotation["file_name"])
        prediction = pred[annotation["image_id"]]
        pred_map = read_panoptic_png(generated["pred_dir"] / prediction["file_name"])
        for key, value in _fates(gt_map, annotation["segments_info"], pred_map, prediction["segments_info"]).items():
            totals[key] += value
        crowds += sum(s["iscrowd"] for s in annotation["segments_info"])
        voids += int((gt_map == 0).any())
    assert crowds >= 6 and voids == 6
    assert totals["matched"] >= 50 and totals["false_positive"] >= 6
    assert totals["ignored_void"] >= 2 and totals["ignored_crowd"] >= 2, totals


def test_generated_data_matches_reference(generated):
    reference = cityscapes_panoptic_scores(generated["gt_json"], generated["gt_dir"], generated["pred_json"], generated["pred_dir"])
    ours = evaluate_panoptic_files(generated["gt_json"], generated["gt_dir"], generated["pred_json"], generated["pred_dir"])
    assert ours.n_images == 6 and 0.2 < ours.pq < 0.95
    assert ours.summary["Things"]["n"] == 8 and ours.summary["Stuff"]["n"] == 11
    assert_matches_reference(ours, reference)


# --- hand-made images with known scores ---------------------------------------------------------------------

CATEGORIES = [
    {"id": 7, "name": "road", "isthing": 0},
    {"id": 8, "name": "sidewalk", "isthing": 0},
    {"id": 24, "name": "person", "isthing": 1},
    {"id": 26, "name": "car", "isthing": 1},
]


def _segments(*entries):
    return [{"id": i, "category_id": c, "iscrowd": crowd} for i, c, crowd in entries]


def hand_made_images():
    """Two 4x8 images; comments give each predicted segment's fate."""
    g1 = np.zeros((4, 8), np.int64)
    g1[0:2, 0:4], g1[0:2, 4:8], g1[2:4, 0:4], g1[2:4, 4:6] = 10, 11, 7, 24001  # rows 2-3, cols 6-7: VOID
    p1 = np.zeros((4, 8), np.int64)
    p1[0:2, 0:4] = 100  # person on person crowd 10; panopticapi only looks at the LAST person crowd (11): FP
    p1[0:2, 4:8] = 101  # car on the person crowd 11: not its class, FP
    p1[2:4, 0:4] = 102  # road, IoU 1: TP
    p1[2:4, 4:8] = 103  # person, half on VOID: union = 8 + 4 - 4 - 4 = 4, IoU 1: TP
    image1 = (
        p1, _segments((100, 24, 0), (101, 26, 0), (102, 7, 0), (103, 24, 0)),
        g1, _segments((7, 7, 0), (10, 24, 1), (11, 24, 1), (24001, 24, 0)),
    )
    g2 = np.zeros((4, 8), np.int64)
    g2[:, 0:4], g2[0:2, 4:6] = 7, 24000
    p2 = np.zeros((4, 8), np.int64)
    p2[:, 0:4] = 6  # road, 12 of 16 px after the car below: IoU 0.75, TP
    p2[2:4, 2:6] = 7  # car, exactly half on VOID: not more than half, FP
    p2[0:2, 4] = 5  # person, IoU exactly 0.5 with the gt person: no match (FP; the gt person is a FN)
    p2[2:4, 6:8], p2[0, 5] = 8, 8  # car, 4 of 5 px on VOID: ignored
    image2 = (p2, _segments((5, 24, 0), (6, 7, 0), (7, 26, 0), (8, 26, 0)), g2, _segments((7, 7, 0), (24000, 24, 0)))
    return [image1, image2]


def write_case(root: Path, images) -> dict[str, Path]:
    """Write in-memory (pred map, pred segments, gt map, gt segments) tuples as COCO panoptic files."""
    paths = {"gt_json": root / "gt.json", "gt_dir": root / "gt", "pred_json": root / "pred.json", "pred_dir": root / "pred"}
    gt_annotations, pred_annotations, infos = [], [], []
    for image_id, (pred_map, pred_segments, gt_map, gt_segments) in enumerate(images, start=1):
        name = f"image{image_id}.png"
        write_panoptic_png(paths["gt_dir"] / name, gt_map)
        write_panoptic_png(paths["pred_dir"] / name, pred_map)
        infos.append({"id": image_id, "file_name": name, "height": gt_map.shape[0], "width": gt_map.shape[1]})
        with_areas = [{**s, "area": int((gt_map == s["id"]).sum())} for s in gt_segments]  # panopticapi reads gt areas
        gt_annotations.append({"image_id": image_id, "file_name": name, "segments_info": with_areas})
        pred_annotations.append({"image_id": image_id, "file_name": name, "segments_info": pred_segments})
    paths["gt_json"].write_text(json.dumps({"images": infos, "annotations": gt_annotations, "categories": CATEGORIES}))
    paths["pred_json"].write_text(json.dumps({"annotations": pred_annotations}))
    return paths


def test_hand_made_images_give_the_expected_scores(tmp_path):
    accumulator = PanopticAccumulator(CATEGORIES)
    for image in hand_made_images():
        accumulator.update(*image)
    result = accumulator.compute()
    counts = {cid: (s["tp"], s["fp"], s["fn"]) for cid, s in result.per_class.items()}
    assert counts == {7: (2, 0, 0), 8: (0, 0, 0), 24: (1, 2, 1), 26: (0, 2, 0)}
    assert result.per_class[7] | {} == {"pq": 0.875, "sq": 0.875, "rq": 1.0, "tp": 2, "fp": 0, "fn": 0}
    assert (result.per_class[24]["pq"], result.per_class[24]["sq"], result.per_class[24]["rq"]) == (0.4, 1.0, 0.4)
    assert (result.per_class[26]["pq"], result.per_class[26]["sq"]) == (0.0, 0.0)
    assert math.isnan(result.per_class[8]["pq"])  # TP + FP + FN = 0: skipped
    assert result.summary["All"] == {"pq": (0.875 + 0.4) / 3, "sq": (0.875 + 1.0) / 3, "rq": 1.4 / 3, "n": 3}
    assert result.summary["Things"]["n"] == 2 and result.summary["Stuff"] == {"pq": 0.875, "sq": 0.875, "rq": 1.0, "n": 1}
    paths = write_case(tmp_path, hand_made_images())
    assert_matches_reference(result, cityscapes_panoptic_scores(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"]))


def test_many_segments_take_the_sparse_histogram_path(tmp_path):
    """1600 segments on each side (more pairs than pixels allow densely): same scores as the reference."""
    blocks = np.arange(1, 1601).reshape(40, 40).repeat(2, axis=0).repeat(2, axis=1)
    gt_map = blocks * 7 + 5000  # ids spread over more than two bytes
    pred_map = np.roll(blocks, 1, axis=1) + 70000
    rng = np.random.default_rng(4)
    categories = rng.choice([7, 8, 24, 26], 1601)
    gt_segments = [{"id": int(i) * 7 + 5000, "category_id": int(categories[i]), "iscrowd": int(i % 97 == 0 and categories[i] >= 24)} for i in range(1, 1601)]
    pred_segments = [{"id": int(i) + 70000, "category_id": int(categories[i] if i % 5 else categories[i - 1])} for i in range(1, 1601)]
    image = (pred_map, pred_segments, gt_map, gt_segments)
    accumulator = PanopticAccumulator(CATEGORIES)
    accumulator.update(*image)
    paths = write_case(tmp_path, [image])
    reference = cityscapes_panoptic_scores(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
    assert_matches_reference(accumulator.compute(), reference)
