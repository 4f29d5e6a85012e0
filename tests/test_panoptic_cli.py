"""`alignbench eval panoptic` and `alignbench perf panoptic`: contract, workers, one-line errors for bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from alignbench_test_helpers import REPO_ROOT, assert_same_scores

from alignbench.bench.data.coco import read_panoptic_png, write_panoptic_png
from alignbench.bench.perf import write_panoptic_benchmark_pairs
from alignbench.metrics.panoptic import PanopticAccumulator


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("panoptic-cli")
    write_panoptic_benchmark_pairs(root, n=4, size=(96, 192), density=1.2, seed=2)
    return root


@pytest.fixture
def data(pristine, tmp_path):
    """A private copy each test may damage."""
    root = tmp_path / "data"
    shutil.copytree(pristine, root)
    return {"root": root, "gt_json": root / "gt.json", "gt_dir": root / "gt", "pred_json": root / "pred.json", "pred_dir": root / "pred"}


def _args(data, **override):
    paths = {**data, **override}
    return ["eval", "panoptic", "--gt-json", paths["gt_json"], "--gt-dir", paths["gt_dir"],
            "--pred-json", paths["pred_json"], "--pred-dir", paths["pred_dir"]]


def _expected(data) -> dict:
    gt = json.loads(data["gt_json"].read_text())
    pred = {a["image_id"]: a for a in json.loads(data["pred_json"].read_text())["annotations"]}
    accumulator = PanopticAccumulator(gt["categories"])
    for annotation in gt["annotations"]:
        prediction = pred[annotation["image_id"]]
        accumulator.update(
            read_panoptic_png(data["pred_dir"] / prediction["file_name"]), prediction["segments_info"],
            read_panoptic_png(data["gt_dir"] / annotation["file_name"]), annotation["segments_info"],
        )
    return json.loads(json.dumps(accumulator.compute().to_json(), default=float).replace("NaN", "null"))


def test_json_contract_values_and_table(cli, data, tmp_path):
    out = tmp_path / "pq.json"
    result = cli(*_args(data), "--json", out)
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    for group in ("All", "Things", "Stuff"):
        assert set(scores[group]) == {"pq", "sq", "rq", "n"}
    assert scores["Things"]["n"] == 8 and scores["Stuff"]["n"] == 11 and scores["n_images"] == 4
    assert len(scores["per_class"]) == 19 and set(scores["per_class"]["26"]) == {"pq", "sq", "rq"}
    assert_same_scores(scores, _expected(data))
    assert f"{100 * scores['All']['pq']:.1f}" in result.stdout and "Things" in result.stdout and "car (26)" in result.stdout


def test_workers_give_identical_results(cli, data, tmp_path):
    outs = [tmp_path / "one.json", tmp_path / "two.json"]
    for workers, out in zip((1, 2), outs):
        result = cli(*_args(data), "--workers", workers, "--json", out, "--quiet")
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""
    assert json.loads(outs[0].read_text()) == json.loads(outs[1].read_text())


def test_evaluation_imports_no_torch(data):
    import subprocess
    import sys

    code = (
        "import sys\nfrom alignbench.bench.cli import main\n"
        f"assert main({[str(a) for a in _args(data)] + ['--quiet']!r}) == 0\n"
        "assert not {'torch', 'matplotlib', 'pycocotools'} & set(sys.modules), sorted(sys.modules)\n"
        "assert 'cityscapesscripts.evaluation.evalPanopticSemanticLabeling' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_metrics_do_not_import_bench():
    import subprocess
    import sys

    code = "import sys, alignbench.metrics.panoptic, alignbench.metrics.coco\nassert not any(m.startswith('alignbench.bench') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


# --- bad input ----------------------------------------------------------------------------------------------


def _expect_error(cli, data, fragments, workers=1, **override):
    out = data["root"] / "pq.json"
    out.write_text("previous results\n")
    result = cli(*_args(data, **override), "--workers", workers, "--json", out)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]
    assert out.read_text() == "previous results\n"  # nothing already written is lost
    return lines[0]


def _edit(path, change):
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))


def _annotation(data, which, index=1):
    payload = json.loads(data[f"{which}_json"].read_text())
    return payload["annotations"][index]


@pytest.mark.parametrize("workers", [1, 2])
def test_segment_in_png_but_not_in_json(cli, data, workers):
    annotation = _annotation(data, "pred")
    dropped = annotation["segments_info"][0]["id"]
    _edit(data["pred_json"], lambda p: p["annotations"][1]["segments_info"].pop(0))
    png = data["pred_dir"] / annotation["file_name"]
    _expect_error(cli, data, [png, f"image id {annotation['image_id']}", f"segment id {dropped}", "not in its segments_info"], workers)


def test_segment_in_json_but_not_in_png(cli, data):
    annotation = _annotation(data, "pred")
    _edit(data["pred_json"], lambda p: p["annotations"][1]["segments_info"].append({"id": 4242, "category_id": 7}))
    _expect_error(cli, data, [data["pred_json"], f"image id {annotation['image_id']}", "segment id 4242", "not in the prediction map"])


def test_ground_truth_segment_missing_from_json(cli, data):
    annotation = _annotation(data, "gt", 2)
    dropped = annotation["segments_info"][3]["id"]
    _edit(data["gt_json"], lambda p: p["annotations"][2]["segments_info"].pop(3))
    _expect_error(cli, data, [data["gt_dir"] / annotation["file_name"], f"segment id {dropped}", "ground truth map"])


def test_unknown_category_id(cli, data):
    annotation = _annotation(data, "pred", 0)
    segment_id = annotation["segments_info"][2]["id"]
    _edit(data["pred_json"], lambda p: p["annotations"][0]["segments_info"][2].update(category_id=77))
    _expect_error(cli, data, [data["pred_json"], f"image id {annotation['image_id']}", f"segment id {segment_id}", "unknown category id 77"])


def test_image_without_prediction(cli, data):
    _edit(data["pred_json"], lambda p: p["annotations"].pop(3))
    _expect_error(cli, data, [data["pred_json"], "no prediction for image id 4"])


def test_prediction_without_ground_truth(cli, data):
    def add(payload):
        payload["annotations"].append({**payload["annotations"][0], "image_id": 99})

    _edit(data["pred_json"], add)
    _expect_error(cli, data, [data["pred_json"], "image id 99 has no ground truth"])


@pytest.mark.parametrize("which", ["gt", "pred"])
def test_malformed_json(cli, data, which):
    data[f"{which}_json"].write_text('{"annotations": [')
    _expect_error(cli, data, [data[f"{which}_json"], "malformed JSON"])


def test_json_without_annotations(cli, data):
    data["pred_json"].write_text("[]")
    _expect_error(cli, data, [data["pred_json"], "'annotations' list"])


def test_wrong_png_size(cli, data):
    annotation = _annotation(data, "pred", 2)
    png = data["pred_dir"] / annotation["file_name"]
    write_panoptic_png(png, read_panoptic_png(png)[:, :150])
    _expect_error(cli, data, [png, "size 150x96", "image id 3"])


def test_ground_truth_png_disagrees_with_images_entry(cli, data):
    _edit(data["gt_json"], lambda p: p["images"][0].update(width=100))
    _expect_error(cli, data, [data["gt_dir"], "differs from gt.json's 100x96", "image id 1"])


def test_not_an_rgb_png(cli, data):
    annotation = _annotation(data, "pred", 0)
    png = data["pred_dir"] / annotation["file_name"]
    from alignbench.bench.io import write_png

    write_png(png, np.zeros((96, 192), np.uint8))
    _expect_error(cli, data, [png, "expected an 8-bit RGB panoptic PNG"])


def test_missing_files_and_folders(cli, data):
    annotation = _annotation(data, "pred", 0)
    (data["pred_dir"] / annotation["file_name"]).unlink()
    _expect_error(cli, data, [data["pred_dir"] / annotation["file_name"], "file not found", "image id 1"])
    _expect_error(cli, data, [data["root"] / "nowhere", "folder not found"], gt_dir=data["root"] / "nowhere")
    _expect_error(cli, data, ["missing.json", "not found"], gt_json=data["root"] / "missing.json")
