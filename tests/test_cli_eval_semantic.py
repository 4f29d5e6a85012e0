"""`alignbench eval semantic`: the JSON contract, workers, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from alignbench_test_helpers import assert_same_scores

from alignbench.bench.data.cityscapes import find_frames, read_frame
from alignbench.bench.io import write_png
from alignbench.metrics.labels import CITYSCAPES
from alignbench.metrics.semantic import SemanticAccumulator

CONTRACT_KEYS = {"mIoU", "iIoU", "IoU_category", "iIoU_category", "class_IoU", "class_iIoU", "boundary_mIoU", "n_images"}


def _expected(predictions) -> dict:
    # Cityscapes' band widths are stated at its 1024x2048 frames: the 64x128 test scenes get them scaled
    accumulator = SemanticAccumulator(band_reference_size=(1024, 2048))
    for frame in find_frames(predictions.gt_root, "val"):
        sample = read_frame(frame, with_image=False)
        accumulator.update(predictions.predictions[frame.name], sample.label_ids, sample.instance_ids)
    return json.loads(json.dumps(accumulator.compute().to_json(), default=float).replace("NaN", "null"))


def test_json_contract_and_values(cli, predictions, tmp_path):
    out = tmp_path / "scores.json"
    result = cli("eval", "semantic", "--gt", predictions.gt_root, "--pred", predictions.pred_dir, "--json", out)
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    assert CONTRACT_KEYS <= set(scores)
    assert set(scores["boundary_mIoU"]) == {"3", "5", "8", "12"}
    assert len(scores["class_IoU"]) == 19 and scores["n_images"] == 4
    assert all(v is None or 0.0 <= v <= 1.0 for v in scores["class_IoU"].values())
    assert_same_scores(scores, _expected(predictions), abs_tolerance=1e-12)
    # 3/5/8/12 px at 1024x2048 are 0.19 / 0.31 / 0.5 / 0.75 px at 64x128: each rounded up to the 1 px the maps have
    assert scores["boundary_width_px"] == {"3": [1], "5": [1], "8": [1], "12": [1]}
    assert len(set(scores["boundary_mIoU"].values())) == 1
    assert 0.0 < scores["boundary_pixel_share"]["3"] < 1.0
    # the table: percentages with one decimal
    assert f"{100 * scores['mIoU']:.1f}" in result.stdout
    assert "12px" in result.stdout


def test_workers_give_identical_results(cli, predictions, tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    for workers, out in ((1, one), (2, two)):
        result = cli("eval", "semantic", "--gt", predictions.gt_root, "--pred", predictions.pred_dir, "--workers", workers, "--json", out, "--quiet")
        assert result.returncode == 0, result.stderr
    assert json.loads(one.read_text()) == json.loads(two.read_text())


def test_train_id_predictions_and_custom_bands(cli, predictions, tmp_path):
    train_dir = tmp_path / "train_ids"
    for name, prediction in predictions.predictions.items():
        write_png(train_dir / f"{name}_x.png", CITYSCAPES.train_id_of[prediction])
    out = tmp_path / "scores.json"
    result = cli("eval", "semantic", "--gt", predictions.gt_root, "--pred", train_dir, "--pred-ids", "train", "--bands", "2,4", "--json", out)
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    assert set(scores["boundary_mIoU"]) == {"2", "4"}
    assert 0.0 < scores["mIoU"] < 1.0


def _expect_error(cli, predictions, pred_dir, fragment, *extra):
    out = predictions.pred_dir.parent / "scores.json"
    out.write_text("previous results\n")
    result = cli("eval", "semantic", "--gt", predictions.gt_root, "--pred", pred_dir, "--json", out, *extra)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0] and "Traceback" not in result.stderr
    assert out.read_text() == "previous results\n"  # nothing already written is lost
    return lines[0]


def _some_prediction(predictions):
    return sorted(predictions.pred_dir.rglob("*.png"))[0]


def test_ground_truth_without_prediction(cli, predictions):
    missing = _some_prediction(predictions)
    missing.unlink()
    line = _expect_error(cli, predictions, predictions.pred_dir, "no prediction found")
    assert missing.name.split("_pred")[0] in line


def test_prediction_without_ground_truth(cli, predictions):
    stray = predictions.pred_dir / "berlin_000000_000019_pred.png"
    write_png(stray, np.zeros((64, 128), np.uint8))
    _expect_error(cli, predictions, predictions.pred_dir, f"{stray}: prediction has no ground truth")


def test_two_predictions_for_one_frame(cli, predictions):
    first = _some_prediction(predictions)
    shutil.copy(first, first.with_name(first.name.replace("_pred", "_pred_copy")))
    _expect_error(cli, predictions, predictions.pred_dir, "several predictions match")


def test_shape_mismatch(cli, predictions):
    path = _some_prediction(predictions)
    write_png(path, np.zeros((32, 128), np.uint8))
    _expect_error(cli, predictions, predictions.pred_dir, f"{path}: size 128x32 differs from ground truth")


def test_label_id_out_of_range(cli, predictions):
    path = _some_prediction(predictions)
    write_png(path, np.full((64, 128), 40, np.uint8))
    _expect_error(cli, predictions, predictions.pred_dir, f"{path}: prediction has label id 40 outside 0..33")


def test_train_id_out_of_range(cli, predictions):
    for path in predictions.pred_dir.rglob("*.png"):
        write_png(path, np.full((64, 128), 19, np.uint8))
    _expect_error(cli, predictions, predictions.pred_dir, "prediction has train id 19 outside 0..18 and 255", "--pred-ids", "train")


def test_ground_truth_id_out_of_range(cli, predictions, tmp_path):
    gt_root = tmp_path / "gt"
    shutil.copytree(predictions.gt_root, gt_root)
    label_file = sorted((gt_root / "gtFine" / "val").rglob("*_labelIds.png"))[0]
    write_png(label_file, np.full((64, 128), 50, np.uint8))
    out = tmp_path / "scores.json"
    result = cli("eval", "semantic", "--gt", gt_root, "--pred", predictions.pred_dir, "--json", out)
    assert result.returncode == 2 and f"{label_file}: ground truth has label id 50" in result.stderr
    assert not out.exists()


def test_truncated_png(cli, predictions):
    path = _some_prediction(predictions)
    path.write_bytes(path.read_bytes()[:60])
    _expect_error(cli, predictions, predictions.pred_dir, f"{path}: truncated PNG")


def test_unreadable_file(cli, predictions):
    path = _some_prediction(predictions)
    path.write_bytes(b"not a png at all")
    _expect_error(cli, predictions, predictions.pred_dir, f"{path}: not a PNG file")


def test_rgb_prediction(cli, predictions):
    path = _some_prediction(predictions)
    write_png(path, np.zeros((64, 128, 3), np.uint8))
    _expect_error(cli, predictions, predictions.pred_dir, f"{path}: expected a single-channel PNG, found RGB")


def test_empty_and_missing_prediction_folders(cli, predictions, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _expect_error(cli, predictions, empty, f"{empty}: no PNG predictions found")
    _expect_error(cli, predictions, tmp_path / "nowhere", "prediction folder not found")


def test_missing_ground_truth_split(cli, predictions):
    _expect_error(cli, predictions, predictions.pred_dir, "gtFine/test: folder not found", "--split", "test")


@pytest.mark.parametrize("bad", ["--workers=0", "--bands=3,x", "--pred-ids=colour"])
def test_bad_options_are_usage_errors(cli, predictions, bad):
    result = cli("eval", "semantic", "--gt", predictions.gt_root, "--pred", predictions.pred_dir, bad)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
