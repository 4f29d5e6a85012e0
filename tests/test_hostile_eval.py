"""Hostile input to `eval panoptic`, `eval coco` and `eval semantic`: one line naming the file and field,
exit status 2, no traceback, an earlier --json output untouched; and band widths the old 8-bit levels
could not hold (widths above 255 px, hundreds of bands) scored correctly.

The commands run in this process through `alignbench.bench.cli.main` (the same code path as the console
script, without a process start per case); an unexpected exception would escape `main` and fail the test.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from alignbench.bench.cli import main
from alignbench.bench.perf import synthetic_coco_ground_truth, synthetic_detections, write_panoptic_benchmark_pairs
from alignbench.metrics.boundary import band_levels, band_levels_torch, boundary_mask
from alignbench.metrics.coco import encode_mask
from alignbench.metrics.labels import CITYSCAPES
from alignbench.metrics.semantic import SemanticAccumulator

PREVIOUS = "previous results\n"


def run(capsys, tmp_path, *args) -> tuple[int, str, str]:
    """Run the CLI with --json into a file holding earlier results; return (status, stderr line, json text)."""
    out = tmp_path / "scores.json"
    out.write_text(PREVIOUS)
    status = main([str(a) for a in args] + ["--quiet", "--json", str(out)])
    captured = capsys.readouterr()
    return status, captured.err, out.read_text()


def expect_error(capsys, tmp_path, args, fragments) -> None:
    status, err, out = run(capsys, tmp_path, *args)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert out == PREVIOUS


# --- eval panoptic -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def panoptic_pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-panoptic")
    write_panoptic_benchmark_pairs(root, n=2, size=(64, 128), density=1.2, seed=3)
    return root


@pytest.fixture
def panoptic(panoptic_pristine, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(panoptic_pristine, root)
    return root


def panoptic_args(root):
    return ["eval", "panoptic", "--gt-json", root / "gt.json", "--gt-dir", root / "gt", "--pred-json", root / "pred.json", "--pred-dir", root / "pred"]


def edit_json(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def first_crowd(data) -> dict:
    return next(s for a in data["annotations"] for s in a["segments_info"] if s["iscrowd"])


BAD_IDS = [[1], {"id": 1}, 1.5, True, None]


@pytest.mark.parametrize("side", ["gt", "pred"])
@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_panoptic_image_ids_that_are_not_integers_or_strings(capsys, tmp_path, panoptic, side, bad):
    edit_json(panoptic / f"{side}.json", lambda data: data["annotations"][0].update(image_id=bad))
    expect_error(capsys, tmp_path, panoptic_args(panoptic), [f"{side}.json", "annotations[0]", "'image_id'", "integer or a string"])


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_panoptic_image_ids_in_the_images_list(capsys, tmp_path, panoptic, bad):
    edit_json(panoptic / "gt.json", lambda data: data["images"][1].update(id=bad))
    expect_error(capsys, tmp_path, panoptic_args(panoptic), ["gt.json", "images[1] 'id'", "integer or a string"])


@pytest.mark.parametrize("side", ["gt", "pred"])
@pytest.mark.parametrize("field", ["id", "category_id"])
@pytest.mark.parametrize("bad", [[26], {"a": 1}, "26", 2.0], ids=repr)
def test_panoptic_segment_ids_that_are_not_integers(capsys, tmp_path, panoptic, side, field, bad):
    edit_json(panoptic / f"{side}.json", lambda data: data["annotations"][0]["segments_info"][0].update({field: bad}))
    expect_error(capsys, tmp_path, panoptic_args(panoptic), [f"{side}.json", "image id 1", repr(bad)])


@pytest.mark.parametrize("bad", [[7], "7", None, 2.5])
def test_panoptic_category_ids_and_isthing(capsys, tmp_path, panoptic, bad):
    edit_json(panoptic / "gt.json", lambda data: data["categories"][0].update(id=bad))
    expect_error(capsys, tmp_path, panoptic_args(panoptic), ["gt.json", "categories[0]", "integer 'id'"])


@pytest.mark.parametrize("bad", [2, "1", -1, [1], None])
def test_panoptic_isthing_other_than_0_or_1(capsys, tmp_path, panoptic, bad):
    edit_json(panoptic / "gt.json", lambda data: data["categories"][3].update(isthing=bad))
    expect_error(capsys, tmp_path, panoptic_args(panoptic), ["gt.json", "categories[3]", "'isthing' must be 0 or 1", repr(bad)])


@pytest.mark.parametrize("bad", [2, "1", -1, [1], None, 0.5])
def test_panoptic_ground_truth_iscrowd_other_than_0_or_1_is_refused(capsys, tmp_path, panoptic, bad):
    def change(data):
        first_crowd(data)["iscrowd"] = bad

    edit_json(panoptic / "gt.json", change)
    expect_error(capsys, tmp_path, panoptic_args(panoptic), ["gt.json", "iscrowd", repr(bad), "expected 0 or 1"])


def test_panoptic_prediction_iscrowd_is_ignored_as_by_the_reference(capsys, tmp_path, panoptic):
    before = run(capsys, tmp_path, *panoptic_args(panoptic))
    edit_json(panoptic / "pred.json", lambda data: data["annotations"][0]["segments_info"][0].update(iscrowd=7))
    after = run(capsys, tmp_path, *panoptic_args(panoptic))
    assert before[0] == after[0] == 0 and before[2] == after[2] != PREVIOUS


@pytest.mark.parametrize("field", ["height", "width"])
@pytest.mark.parametrize("bad", ["64", 0, -64, 64.0, [64], None])
def test_panoptic_image_sizes_given_as_strings_or_nonsense(capsys, tmp_path, panoptic, field, bad):
    edit_json(panoptic / "gt.json", lambda data: data["images"][0].update({field: bad}))
    expect_error(capsys, tmp_path, panoptic_args(panoptic), ["gt.json", "images[0]", f"'{field}' must be a positive integer", repr(bad)])


def test_panoptic_size_mismatch_names_both_sizes(capsys, tmp_path, panoptic):
    edit_json(panoptic / "gt.json", lambda data: data["images"][0].update(height=65))
    expect_error(capsys, tmp_path, panoptic_args(panoptic), ["size 128x64 differs from gt.json's 128x65"])


# --- eval coco ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco_data():
    gt = synthetic_coco_ground_truth(2, (64, 128), density=1.5, seed=4)
    detections = synthetic_detections(gt, np.random.default_rng(4))
    return gt, detections


@pytest.fixture
def coco(coco_data, tmp_path):
    gt, detections = json.loads(json.dumps(coco_data[0])), json.loads(json.dumps(coco_data[1]))
    return {"gt": gt, "dt": detections, "root": tmp_path}


def coco_args(coco, iou_type="segm"):
    gt_path, dt_path = coco["root"] / "gt.json", coco["root"] / "dt.json"
    gt_path.write_text(json.dumps(coco["gt"]))
    dt_path.write_text(json.dumps(coco["dt"]))
    return ["eval", "coco", "--gt", gt_path, "--dt", dt_path, "--iou-type", iou_type]


def test_coco_clean_input_still_scores(capsys, tmp_path, coco):
    for iou_type in ("bbox", "segm"):
        status, err, out = run(capsys, tmp_path, *coco_args(coco, iou_type))
        assert status == 0, err
        assert 0 < json.loads(out)["AP"] <= 1


@pytest.mark.parametrize("field", ["image_id", "category_id"])
@pytest.mark.parametrize("bad", [[1], {"id": 1}, 1.5, None], ids=repr)
def test_coco_detection_ids_that_are_not_integers_or_strings(capsys, tmp_path, coco, field, bad):
    coco["dt"][3][field] = bad
    expect_error(capsys, tmp_path, coco_args(coco), ["dt.json", "detection 3", f"'{field}' must be an integer or a string", repr(bad)])


@pytest.mark.parametrize("where", ["images", "annotations", "categories"])
@pytest.mark.parametrize("bad", [[1], {"id": 1}, 2.5], ids=repr)
def test_coco_ground_truth_ids_that_are_not_integers_or_strings(capsys, tmp_path, coco, where, bad):
    coco["gt"][where][0]["id"] = bad
    expect_error(capsys, tmp_path, coco_args(coco), ["gt.json", f"{where}[0] 'id'", repr(bad)])


def test_coco_image_ids_mixing_integers_and_strings(capsys, tmp_path, coco):
    coco["gt"]["images"][1]["id"] = "second"
    expect_error(capsys, tmp_path, coco_args(coco), ["gt.json", "image ids mix integers and strings"])


@pytest.mark.parametrize("bad", [2, "1", "0", -1, None, [1]])
def test_coco_iscrowd_other_than_0_or_1_is_refused(capsys, tmp_path, coco, bad):
    coco["gt"]["annotations"][2]["iscrowd"] = bad
    expect_error(capsys, tmp_path, coco_args(coco, "bbox"), ["gt.json", "annotations[2]", "'iscrowd' must be 0 or 1"])


def test_coco_missing_iscrowd_is_refused(capsys, tmp_path, coco):
    del coco["gt"]["annotations"][1]["iscrowd"]
    expect_error(capsys, tmp_path, coco_args(coco, "bbox"), ["gt.json", "annotations[1] has no iscrowd"])


def _rle_cases(height, width):
    """(label, segmentation, expected message fragment) of RLEs COCOeval must not be given."""
    full = encode_mask(np.ones((height, width), np.uint8))
    small = encode_mask(np.ones((height, width - 1), np.uint8))
    return [
        ("counts-int", {"size": [height, width], "counts": 17}, "neither a string nor a list"),
        ("counts-strings", {"size": [height, width], "counts": ["1", "2"]}, "neither a string nor a list"),
        ("counts-negative", {"size": [height, width], "counts": [height * width + 1, -1]}, "neither a string nor a list"),
        ("size-string", {"size": f"{height}x{width}", "counts": full["counts"]}, "'size' that is not [height, width]"),
        ("size-short", {"size": [height], "counts": full["counts"]}, "'size' that is not [height, width]"),
        ("size-strings", {"size": [str(height), str(width)], "counts": full["counts"]}, "'size' that is not [height, width]"),
        ("garbage", {"size": [height, width], "counts": "~~~~ not an RLE"}, "is malformed"),
        ("cut-off", {"size": [height, width], "counts": full["counts"] + "o"}, "is malformed"),
        ("empty-string", {"size": [height, width], "counts": ""}, "covers 0 pixels"),
        ("empty-list", {"size": [height, width], "counts": []}, "covers 0 pixels"),
        ("too-short", {"size": [height, width], "counts": small["counts"]}, f"covers {height * (width - 1)} pixels"),
        ("too-long", {"size": [height, width], "counts": [height * width, 5]}, f"covers {height * width + 5} pixels"),
    ]


@pytest.mark.parametrize("case", range(12))
def test_coco_bad_rle_in_detections(capsys, tmp_path, coco, case):
    image = next(i for i in coco["gt"]["images"] if i["id"] == coco["dt"][1]["image_id"])
    label, segmentation, fragment = _rle_cases(image["height"], image["width"])[case]
    coco["dt"][1]["segmentation"] = segmentation
    expect_error(capsys, tmp_path, coco_args(coco), ["dt.json", "detection 1", fragment])


@pytest.mark.parametrize("case", range(12))
def test_coco_bad_rle_in_ground_truth_is_reported_against_the_ground_truth(capsys, tmp_path, coco, case):
    annotation = coco["gt"]["annotations"][0]
    image = next(i for i in coco["gt"]["images"] if i["id"] == annotation["image_id"])
    label, segmentation, fragment = _rle_cases(image["height"], image["width"])[case]
    annotation["segmentation"] = segmentation
    expect_error(capsys, tmp_path, coco_args(coco), ["gt.json", "annotations[0]", fragment])


@pytest.mark.parametrize("bad", [[], [[1, 2, 3, 4]], [[1, 2, 3, 4, 5, 6, 7]], [["1", "2", "3", "4", "5", "6"]], "polygon"], ids=repr)
def test_coco_bad_polygons_in_ground_truth(capsys, tmp_path, coco, bad):
    coco["gt"]["annotations"][0]["segmentation"] = bad
    expect_error(capsys, tmp_path, coco_args(coco), ["gt.json", "annotations[0]"])


def test_coco_valid_polygons_and_uncompressed_rle_in_ground_truth_are_accepted(capsys, tmp_path, coco):
    annotation = coco["gt"]["annotations"][0]
    image = next(i for i in coco["gt"]["images"] if i["id"] == annotation["image_id"])
    annotation["segmentation"] = [[2.0, 2.0, 20.0, 2.0, 20.0, 10.0, 2.0, 10.0]]
    coco["gt"]["annotations"][1]["segmentation"] = {"size": [image["height"], image["width"]], "counts": [100, 50, image["height"] * image["width"] - 150]}
    coco["gt"]["annotations"][1]["image_id"] = image["id"]
    status, err, _ = run(capsys, tmp_path, *coco_args(coco))
    assert status == 0, err


@pytest.mark.parametrize("side", ["gt", "dt"])
@pytest.mark.parametrize("box", [[1, 1, -3, 4], [1, 1, 3, -0.5]])
def test_coco_negative_box_width_or_height(capsys, tmp_path, coco, side, box):
    (coco["gt"]["annotations"] if side == "gt" else coco["dt"])[2]["bbox"] = box
    expect_error(capsys, tmp_path, coco_args(coco, "bbox"), [f"{side}.json", "[2]", "negative width or height"])


@pytest.mark.parametrize(
    "side, change, fragments",
    [
        ("gt", lambda c: c["gt"]["images"][0].update(height="64"), ["images[0] 'height' must be a positive integer, got '64'"]),
        ("gt", lambda c: c["gt"]["images"][1].update(width="128"), ["images[1] 'width' must be a positive integer, got '128'"]),
        ("gt", lambda c: c["gt"]["annotations"][0].update(area="12"), ["annotations[0] 'area' must be a non-negative number, got '12'"]),
        ("gt", lambda c: c["gt"]["annotations"][0].update(bbox=["1", "2", "3", "4"]), ["annotations[0]", "'bbox' of 4 numbers"]),
        ("dt", lambda c: c["dt"][0].update(score="0.5"), ["detection 0", "non-numeric score"]),
        ("dt", lambda c: c["dt"][0].update(bbox=[1, 2, "3", 4]), ["detection[0]", "'bbox' of 4 numbers"]),
        ("dt", lambda c: c["dt"][0].update(image_id=str(c["dt"][0]["image_id"])), ["detection 0", "which is not in the ground truth"]),
    ],
    ids=["gt-height", "gt-width", "gt-area", "gt-bbox", "dt-score", "dt-bbox", "dt-image-id"],
)
def test_coco_numbers_given_as_strings(capsys, tmp_path, coco, side, change, fragments):
    change(coco)
    expect_error(capsys, tmp_path, coco_args(coco), [f"{side}.json", *fragments])


def test_coco_ground_truth_problem_seen_through_a_detection_names_the_ground_truth(capsys, tmp_path, coco):
    """A ground-truth image size given as a string used to surface as a detection's wrong mask size."""
    coco["gt"]["images"][0]["height"] = str(coco["gt"]["images"][0]["height"])
    status, err, _ = run(capsys, tmp_path, *coco_args(coco))
    assert status == 2 and "gt.json" in err and "dt.json" not in err


# --- eval semantic: band widths ----------------------------------------------------------------------------


def brute_force_levels(boundary: np.ndarray, evaluated: np.ndarray, bands) -> np.ndarray:
    points = np.argwhere(boundary)
    grid = np.indices(boundary.shape).reshape(2, -1).T
    if len(points):
        nearest = np.sqrt(((grid[:, None, :] - points[None, :, :]) ** 2).sum(axis=2).min(axis=1))
    else:
        nearest = np.full(len(grid), math.inf)
    levels = np.searchsorted(np.asarray(bands, float), nearest, side="left").reshape(boundary.shape)
    levels[~evaluated] = len(bands)
    return levels


def wide_map() -> np.ndarray:
    """8 x 700 px: road, with one car column at x = 5, so distances run up to ~694 px."""
    label_ids = np.full((8, 700), 7, np.uint8)
    label_ids[:, 5] = 26
    return label_ids


@pytest.mark.parametrize("bands", [(3, 256, 300, 600), (254, 255, 256, 257), (1, 700, 10**9)])
@pytest.mark.parametrize("method", ["dilate", "distance", "auto", "torch"])
def test_band_widths_above_255_are_exact(bands, method):
    import torch

    label_ids = wide_map()
    evaluated = CITYSCAPES.evaluated[label_ids]
    boundary = boundary_mask(label_ids, CITYSCAPES.evaluated)
    if method == "dilate" and bands[-1] > 1000:
        pytest.skip("a disk kernel of 10^9 px is not built; 'auto' takes the distance transform")
    if method == "torch":
        levels = band_levels_torch(torch.from_numpy(boundary), bands).numpy()
    else:
        levels = band_levels(boundary, bands, method=method)
    levels[~evaluated] = len(bands)
    expected = brute_force_levels(boundary, evaluated, bands)
    np.testing.assert_array_equal(levels, expected)
    assert any((expected == level).any() for level, width in enumerate(bands) if width > 255)  # the wide bands matter here


@pytest.mark.parametrize("method", ["dilate", "distance", "torch"])
def test_hundreds_of_bands_on_an_image_without_boundaries(method):
    import torch

    bands = tuple(range(1, 301))
    boundary = np.zeros((16, 32), bool)
    if method == "torch":
        levels = band_levels_torch(torch.from_numpy(boundary), bands).numpy()
    else:
        levels = band_levels(boundary, bands, method=method)
    assert (levels == 300).all()
    boundary[8, 16] = True
    levels = band_levels_torch(torch.from_numpy(boundary), bands).numpy() if method == "torch" else band_levels(boundary, bands, method=method)
    expected = np.searchsorted(np.arange(1, 301, dtype=float), np.hypot(*np.indices((16, 32)) - np.array([8, 16])[:, None, None]), side="left")
    np.testing.assert_array_equal(levels, expected)


def test_accumulator_with_hundreds_of_bands_and_wide_bands():
    label_ids = wide_map()
    prediction = label_ids.copy()
    prediction[:, 400:] = 8  # sidewalk predicted on the far part of the road
    bands = tuple(range(1, 301)) + (500, 10**6)
    accumulator = SemanticAccumulator(bands=bands)
    accumulator.update(prediction, label_ids)
    flat = SemanticAccumulator(bands=bands)
    flat.update(np.full((16, 32), 7, np.uint8), np.full((16, 32), 7, np.uint8))  # no boundary at all
    result = accumulator.merge(flat).compute()
    # per band: road pixels within the width of the boundary (columns 4, 5, 6: the car and its neighbours)
    distance = np.abs(np.arange(700)[:, None] - np.array([4, 5, 6])[None, :]).min(axis=1)
    for width in (1, 100, 299, 300, 500, 10**6):
        inside = distance <= width
        road_right = int((inside & (np.arange(700) < 400) & (np.arange(700) != 5)).sum()) * 8
        road_wrong = int((inside & (np.arange(700) >= 400)).sum()) * 8
        assert result.boundary_class_iou[width]["road"] == pytest.approx(road_right / (road_right + road_wrong))
        assert result.boundary_class_iou[width]["car"] == 1.0
    assert math.isnan(result.boundary_class_iou[300]["sidewalk"])  # no sidewalk predicted within 306 px
    assert result.boundary_class_iou[500]["sidewalk"] == 0.0  # predicted, absent from the ground truth


def test_cli_band_widths_above_255_and_hundreds_of_bands(capsys, tmp_path, small_tree):
    from alignbench.bench.data.cityscapes import find_frames, read_frame
    from alignbench.bench.io import write_png

    pred_dir = tmp_path / "pred"
    for frame in find_frames(small_tree, "val"):
        write_png(pred_dir / frame.city / f"{frame.name}_pred.png", read_frame(frame, with_image=False).label_ids)
    widths = ",".join(str(w) for w in list(range(1, 281)) + [1000, 10**9])
    status, err, out = run(capsys, tmp_path, "eval", "semantic", "--gt", small_tree, "--pred", pred_dir, "--bands", widths)
    assert status == 0, err
    scores = json.loads(out)
    assert len(scores["boundary_mIoU"]) == 282
    assert all(value == 1.0 for value in scores["boundary_mIoU"].values())  # a perfect prediction, every band


def test_compressed_rle_reader_agrees_with_pycocotools():
    """The run-length check reads every string pycocotools writes as covering exactly the mask."""
    from pycocotools import mask as mask_utils

    from alignbench.metrics.coco import _compressed_rle_total

    rng = np.random.default_rng(0)
    for index in range(200):
        height, width = (int(v) for v in rng.integers(1, 90, 2))
        mask = (rng.random((height, width)) < rng.random()).astype(np.uint8)
        if index % 4 == 0:  # long runs: multi-character counts and negative differences
            mask = np.kron(rng.random((height // 9 + 1, width // 9 + 1)) < 0.5, np.ones((9, 9), np.uint8))[:height, :width]
        counts = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")
        assert _compressed_rle_total(counts) == height * width, counts
        assert _compressed_rle_total(counts + "1") != height * width  # one more run
    assert _compressed_rle_total("") == 0
    assert _compressed_rle_total("o") is None and _compressed_rle_total("é") is None
