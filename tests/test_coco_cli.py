"""`alignbench eval coco` and `alignbench perf coco`: JSON contract, table, one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from alignbench_test_helpers import REPO_ROOT

from alignbench.bench.perf import synthetic_coco_ground_truth, synthetic_detections
from alignbench.metrics.coco import evaluate_coco

KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco-cli")
    gt = synthetic_coco_ground_truth(3, (96, 192), density=1.5, seed=5)
    detections = synthetic_detections(gt, np.random.default_rng(5))
    (root / "gt.json").write_text(json.dumps(gt))
    (root / "dt.json").write_text(json.dumps(detections))
    return {"root": root, "gt": root / "gt.json", "dt": root / "dt.json", "gt_data": gt, "detections": detections}


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_json_contract_and_values(cli, files, tmp_path, iou_type):
    out = tmp_path / "ap.json"
    result = cli("eval", "coco", "--gt", files["gt"], "--dt", files["dt"], "--iou-type", iou_type, "--json", out)
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    expected = evaluate_coco(files["gt_data"], files["detections"], iou_type)
    for key in KEYS:
        value = expected.metrics[key]
        assert scores[key] is None if np.isnan(value) else scores[key] == value
    assert 0.0 < scores["AP"] < 1.0 and scores["iou_type"] == iou_type and scores["backend"] == "pycocotools"
    assert f"{100 * scores['AP']:.1f}" in result.stdout and "AP50" in result.stdout


def test_faster_backend_is_refused_with_the_reason(cli, files, tmp_path):
    out = tmp_path / "ap.json"
    result = cli("eval", "coco", "--gt", files["gt"], "--dt", files["dt"], "--iou-type", "bbox",
                 "--backend", "faster-coco-eval", "--json", out)
    assert result.returncode == 2 and "not bit-identical" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def _expect_error(cli, files, tmp_path, fragments, gt=None, dt=None, iou_type="segm"):
    out = tmp_path / "ap.json"
    out.write_text("previous results\n")
    result = cli("eval", "coco", "--gt", gt or files["gt"], "--dt", dt or files["dt"], "--iou-type", iou_type, "--json", out)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert out.read_text() == "previous results\n"


def _write(tmp_path, name, payload) -> str:
    path = tmp_path / name
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


def test_malformed_json_is_named(cli, files, tmp_path):
    bad = _write(tmp_path, "bad_dt.json", '[{"image_id": 1,')
    _expect_error(cli, files, tmp_path, ["bad_dt.json", "malformed JSON"], dt=bad)
    bad = _write(tmp_path, "bad_gt.json", "{")
    _expect_error(cli, files, tmp_path, ["bad_gt.json", "malformed JSON"], gt=bad)


def test_missing_file(cli, files, tmp_path):
    _expect_error(cli, files, tmp_path, ["nothing.json", "not found"], dt=tmp_path / "nothing.json")


def test_detection_on_unknown_image(cli, files, tmp_path):
    detections = [dict(d) for d in files["detections"]]
    detections[4]["image_id"] = 77
    dt = _write(tmp_path, "dt.json", detections)
    _expect_error(cli, files, tmp_path, ["dt.json", "detection 4", "image id 77", "not in the ground truth"], dt=dt)


def test_unknown_category(cli, files, tmp_path):
    detections = [dict(d) for d in files["detections"]]
    detections[2]["category_id"] = 12
    dt = _write(tmp_path, "dt.json", detections)
    _expect_error(cli, files, tmp_path, ["dt.json", "detection 2", "unknown category id 12"], dt=dt, iou_type="bbox")
    gt = json.loads(json.dumps(files["gt_data"]))
    gt["annotations"][3]["category_id"] = 13
    bad_gt = _write(tmp_path, "gt13.json", gt)
    _expect_error(cli, files, tmp_path, ["gt13.json", "annotations[3]", "unknown category id 13"], gt=bad_gt)


def test_wrong_mask_size_and_missing_masks(cli, files, tmp_path):
    detections = [dict(d) for d in files["detections"]]
    detections[0]["segmentation"] = {"size": [10, 10], "counts": "PP0"}
    dt = _write(tmp_path, "dt.json", detections)
    _expect_error(cli, files, tmp_path, ["dt.json", "detection 0", "mask of size [10, 10]"], dt=dt)
    detections = [{k: v for k, v in d.items() if k != "segmentation"} for d in files["detections"]]
    dt = _write(tmp_path, "boxes.json", detections)
    _expect_error(cli, files, tmp_path, ["boxes.json", "needs an RLE 'segmentation'"], dt=dt)


def test_detections_must_be_a_list(cli, files, tmp_path):
    dt = _write(tmp_path, "dict.json", {"annotations": []})
    _expect_error(cli, files, tmp_path, ["dict.json", "expected a list of detections"], dt=dt)


def test_usage_errors(cli, files):
    result = cli("eval", "coco", "--gt", files["gt"], "--dt", files["dt"], "--iou-type", "keypoints")
    assert result.returncode == 2 and "--iou-type" in result.stderr


def test_perf_coco_times_both_backends(cli, tmp_path):
    out = tmp_path / "perf.json"
    result = cli("perf", "coco", "--n", "2", "--size", "64x128", "--json", out, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["n_images"] == 2 and figures["times_s"]["bbox"]["pycocotools"] > 0
    assert "segm: pycocotools" in result.stdout
    if figures["times_s"]["bbox"]["faster-coco-eval"] is not None:
        assert "ratio faster-coco-eval / pycocotools" in result.stdout and figures["ratios"]["segm"] > 0
