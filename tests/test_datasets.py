"""The dataset catalog: CamVid (a tree in SegNet's layout, and the real copy in ../shared/data/camvid), a folder
dataset described in YAML, a dataset plugin, `alignbench datasets`, `eval semantic --dataset` against an independent
confusion-matrix computation (ADE20K, 150 classes, 0 ignored), class tables, and boundary bands scaled to the maps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from alignbench_test_helpers import REPO_ROOT, run_cli

from alignbench.bench.data.camvid import CAMVID, CLASSES
from alignbench.bench.data.catalog import get_dataset, list_datasets
from alignbench.bench.errors import UserError
from alignbench.bench.io import write_png
from alignbench.metrics import boundary
from alignbench.metrics.labels import class_table, default_palette
from alignbench.metrics.semantic import SemanticAccumulator

SHARED_CAMVID = REPO_ROOT.parent / "shared" / "data" / "camvid"


def write_camvid(root: Path, splits=(("train", 3), ("val", 2)), size=(24, 32), seed=0) -> dict[str, np.ndarray]:
    """A CamVid tree in SegNet's layout, list files with the SegNet image's absolute paths; returns the labels."""
    rng = np.random.default_rng(seed)
    labels = {}
    for number, (split, count) in enumerate(splits):
        lines = []
        for index in range(count):
            name = f"0001TP_{100 * number + index:06d}"
            label = rng.integers(0, 12, size).astype(np.uint8)
            write_png(root / split / f"{name}.png", rng.integers(0, 256, (*size, 3)).astype(np.uint8))
            write_png(root / f"{split}annot" / f"{name}.png", label)
            lines.append(f"/SegNet/CamVid/{split}/{name}.png /SegNet/CamVid/{split}annot/{name}.png")
            labels[name] = label
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return labels


# --- the catalog ------------------------------------------------------------------------------------------


def test_the_catalog_holds_the_papers_datasets_with_their_class_counts():
    counts = {dataset.name: dataset.labels.num_train_ids for dataset in list_datasets("semantic")}
    assert counts == {"ade20k": 150, "camvid": 11, "cityscapes": 19, "coco_stuff10k": 171, "coco_stuff164k": 171, "lip": 20,
                      "pascal_context": 59, "pascal_context60": 60, "synthetic": 19, "voc2012": 21}
    assert [dataset.name for dataset in list_datasets("panoptic")] == ["coco", "synthetic"]
    assert get_dataset("cityscapes").labels.defines_instance_scores and not CAMVID.labels.defines_instance_scores
    with pytest.raises(UserError, match="unknown dataset 'nope'.*camvid"):
        get_dataset("nope")


def test_datasets_command_lists_them_as_json_and_as_a_table():
    result = run_cli("datasets", "--json")
    assert result.returncode == 0, result.stderr
    by_name = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert by_name["camvid"]["classes"] == list(CLASSES) and by_name["camvid"]["native_size"] == [360, 480]
    assert by_name["ade20k"]["num_classes"] == 150 and by_name["ade20k"]["native_size"] is None
    assert by_name["coco"]["classes"] is None and by_name["coco"]["tasks"] == ["detection", "instance", "panoptic"]
    table = run_cli("datasets", "--task", "semantic")
    assert table.returncode == 0 and "camvid" in table.stdout and "coco " not in table.stdout
    assert run_cli("datasets", "--task", "segmentation").returncode == 2


# --- CamVid -----------------------------------------------------------------------------------------------


def test_camvid_reads_segnets_layout_with_its_absolute_list_paths(tmp_path):
    labels = write_camvid(tmp_path)
    frames = CAMVID.frames(tmp_path, "train")
    assert [frame.name for frame in frames] == ["0001TP_000000", "0001TP_000001", "0001TP_000002"]
    assert frames[0].image == tmp_path / "train" / "0001TP_000000.png"  # /SegNet/CamVid/... resolved against the root
    sample = CAMVID.read(frames[1])
    np.testing.assert_array_equal(sample.label_ids, labels["0001TP_000001"])  # ids 0..10 the classes, 11 the void id
    expected = labels["0001TP_000001"].copy()
    expected[expected == 11] = 255
    np.testing.assert_array_equal(sample.train_ids, expected)
    assert sample.image.shape == (24, 32, 3) and sample.instance_ids is None
    assert CAMVID.labels.classes == CLASSES and tuple(CAMVID.labels.class_colors[3]) == (128, 64, 128)  # road


def test_a_camvid_split_that_is_not_there_is_one_error_naming_its_folder(tmp_path):
    write_camvid(tmp_path)
    with pytest.raises(UserError, match=rf"{tmp_path / 'testannot'}: camvid split 'test' not found .*splits found: train, val"):
        CAMVID.frames(tmp_path, "test")
    with pytest.raises(UserError, match="--split trial: camvid has the splits train, val, test"):
        CAMVID.frames(tmp_path, "trial")
    (tmp_path / "val.txt").write_text("/SegNet/CamVid/val/a.png /SegNet/CamVid/valannot/b.png\n")
    with pytest.raises(UserError, match=r"val.txt:1: image a.png and label b.png name different frames"):
        CAMVID.frames(tmp_path, "val")
    write_png(tmp_path / "trainannot" / "0001TP_000000.png", np.full((24, 32), 12, np.uint8))
    with pytest.raises(UserError, match=r"0001TP_000000.png: label value 12 is not one of camvid's \(0\.\.11\)"):
        CAMVID.read(CAMVID.frames(tmp_path, "train")[0])


@pytest.mark.skipif(not SHARED_CAMVID.is_dir(), reason="the real CamVid copy (../shared/data/camvid) is not on this machine")
def test_the_real_camvid_copy_reads_as_segnet_distributes_it():
    train, val = CAMVID.frames(SHARED_CAMVID, "train"), CAMVID.frames(SHARED_CAMVID, "val")
    assert (len(train), len(val)) == (367, 101)
    sample = CAMVID.read(val[0])
    assert sample.image.shape == (360, 480, 3) and sample.label_ids.shape == (360, 480)
    assert set(np.unique(sample.label_ids)) <= set(range(12))
    with pytest.raises(UserError, match="testannot: camvid split 'test' not found"):
        CAMVID.frames(SHARED_CAMVID, "test")  # the shared copy has no test split, on purpose
    # the README's pixel counts of the training labels, ids 0..11
    counts = np.zeros(12, np.int64)
    for frame in train:
        counts += np.bincount(CAMVID.read(frame, with_image=False).label_ids.ravel(), minlength=12)
    assert counts.tolist() == [10682767, 14750079, 623349, 20076880, 2845085, 6166762, 743859, 714595, 3719877, 405385,
                               184967, 2503995]


# --- a folder dataset in YAML ----------------------------------------------------------------------------

DATASET_FILE = """\
name: tinyroads
classes: [background, road, car]
palette: [[0, 0, 0], [128, 64, 128], [0, 0, 142]]
ignore_index: 255
native_size: [16, 20]
splits:
  train:
    images: img/train/*.jpg
    labels: ann/train/{stem}.png
  val:
    images: img/val/*.jpg
    labels: ann/val/{stem}_mask.png
"""


def write_folder_dataset(root: Path, text: str = DATASET_FILE) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    labels = {}
    for split, suffix in (("train", ""), ("val", "_mask")):
        for index in range(2):
            name = f"{split}{index}"
            (root / "img" / split).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "img" / split / f"{name}.jpg"), rng.integers(0, 256, (16, 20, 3)).astype(np.uint8))
            label = rng.choice(np.array([0, 1, 2, 255], np.uint8), (16, 20))
            write_png(root / "ann" / split / f"{name}{suffix}.png", label)
            labels[name] = label
    path = root / "tinyroads.yaml"
    path.write_text(text)
    return path, labels


def test_a_yaml_dataset_reads_its_folder_and_maps_its_labels(tmp_path):
    from alignbench.bench.tasks import resolve_data

    path, labels = write_folder_dataset(tmp_path)
    (source,) = resolve_data([str(path)])  # the root defaults to the file's folder
    assert source.dataset.name == "tinyroads" and source.root == tmp_path.resolve() and source.supports("semantic")
    assert source.dataset.labels.classes == ("background", "road", "car") and source.dataset.native_size == (16, 20)
    frames = source.dataset.frames(source.root, "val")
    assert [frame.name for frame in frames] == ["val0", "val1"] and frames[0].label.name == "val0_mask.png"
    sample = source.dataset.read(frames[1])
    np.testing.assert_array_equal(sample.train_ids, labels["val1"])  # 0..2 the classes, 255 ignored
    assert get_dataset("tinyroads") is source.dataset  # registered: suites and `eval --dataset tinyroads` find it
    (elsewhere,) = resolve_data([f"{path}={tmp_path}"])  # FILE=ROOT
    assert elsewhere.root == tmp_path.resolve()


def test_reduce_zero_label_in_a_yaml_dataset(tmp_path):
    from alignbench.bench.data.folder import load_dataset_file

    path, _ = write_folder_dataset(tmp_path, DATASET_FILE.replace("name: tinyroads", "name: tinyzero")
                                   .replace("ignore_index: 255", "reduce_zero_label: true"))
    dataset = load_dataset_file(path)
    write_png(tmp_path / "ann" / "train" / "train0.png", np.array([[0, 1, 3, 255]], np.uint8))
    cv2.imwrite(str(tmp_path / "img" / "train" / "train0.jpg"), np.zeros((1, 4, 3), np.uint8))
    sample = dataset.read(dataset.frames(tmp_path, "train")[0])
    assert sample.train_ids.tolist() == [[255, 0, 2, 255]]


@pytest.mark.parametrize(("change", "message"), [
    (("classes: [background, road, car]", "classes: road"), r"tinyroads.yaml:2: classes: input should be a valid list"),
    (("ignore_index: 255", "ignore_index: '255'"), r"tinyroads.yaml:4: ignore_index: input should be a valid integer"),
    (("ignore_index: 255", "ignore_index: 1"), r"tinyroads.yaml:\d+: ignore_index: .*not a class's label value"),
    (("palette: [[0, 0, 0], [128, 64, 128], [0, 0, 142]]", "palette: [[0, 0, 0]]"), r"tinyroads.yaml:3: palette: expected 3"),
    (("labels: ann/train/{stem}.png", "labels: ann/train/{base}.png"), r"tinyroads.yaml:9: splits.train.labels: unknown placeholder"),
    (("name: tinyroads", "name: cityscapes"), r"tinyroads.yaml:1: name: 'cityscapes' is already the name of a built-in dataset"),
    (("native_size: [16, 20]", "native_size: [16, 20]\ncolors: []"), r"tinyroads.yaml:6: colors: unknown field \(known: name, title"),
])
def test_a_bad_dataset_file_is_one_line_naming_file_line_and_field(tmp_path, change, message):
    from alignbench.bench.data.folder import load_dataset_file

    path, _ = write_folder_dataset(tmp_path, DATASET_FILE.replace(*change))
    with pytest.raises(UserError, match=message):
        load_dataset_file(path)


def test_a_dataset_file_on_the_command_line(tmp_path):
    path, _ = write_folder_dataset(tmp_path)
    listed = run_cli("datasets", "--dataset", path, "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["classes"] == ["background", "road", "car"]
    broken = path.with_name("broken.yaml")
    broken.write_text(DATASET_FILE.replace("classes: [background, road, car]", "classes: 3"))
    result = run_cli("train", "semantic_fpn_fpn_r18", "--data", broken, "--out", tmp_path / "out")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"{broken}:2: classes:" in result.stderr and not (tmp_path / "out").exists()


# --- a dataset plugin -------------------------------------------------------------------------------------

PLUGIN = '''
from pathlib import Path

from alignbench.bench.data.catalog import register_dataset
from alignbench.bench.data.folder import FolderDataset

register_dataset(FolderDataset("pluginroads", ["background", "road", "car"],
                               {"val": ("img/val/*.jpg", "ann/val/{stem}_mask.png")}))
'''


def test_a_plugin_registers_a_dataset_that_every_command_sees(tmp_path):
    write_folder_dataset(tmp_path)
    plugin = tmp_path / "roads_plugin.py"
    plugin.write_text(PLUGIN)
    listed = run_cli("--plugin", plugin, "datasets", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "pluginroads" in {entry["name"] for entry in json.loads(listed.stdout)}
    predictions = tmp_path / "pred"
    for name in ("val0", "val1"):
        write_png(predictions / f"{name}.png", np.ones((16, 20), np.uint8))  # "road" everywhere
    out = tmp_path / "scores.json"
    result = run_cli("--plugin", plugin, "eval", "semantic", "--dataset", "pluginroads", "--gt", tmp_path, "--pred", predictions,
                     "--json", out)
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    assert scores["n_images"] == 2 and set(scores["class_IoU"]) == {"background", "road", "car"}
    assert scores["class_IoU"]["background"] == 0.0 and "iIoU" not in scores and "IoU_category" not in scores


# --- eval semantic --dataset against an independent computation -------------------------------------------


def write_ade20k(root: Path, count: int = 3, seed: int = 5) -> dict[str, np.ndarray]:
    """An ADEChallengeData2016 tree: JPEG images, annotations holding 0 (other) .. 150."""
    rng = np.random.default_rng(seed)
    labels = {}
    for index in range(count):
        name = f"ADE_val_{index + 1:08d}"
        size = (30 + 4 * index, 40)  # ADE20K's images differ in size
        label = rng.integers(0, 151, size).astype(np.uint8)
        label[:10, :10] = rng.integers(1, 4)  # some blocks, so that bands have boundaries and interiors
        (root / "ADEChallengeData2016" / "images" / "validation").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "ADEChallengeData2016" / "images" / "validation" / f"{name}.jpg"), np.zeros((*size, 3), np.uint8))
        write_png(root / "ADEChallengeData2016" / "annotations" / "validation" / f"{name}.png", label)
        labels[name] = label
    return labels


def independent_iou(pairs, classes: int) -> tuple[list[float], float]:
    """Class IoU and mIoU from one confusion matrix of train ids (ignored ground truth skipped; a prediction of the
    ignored value on a scored pixel counts as a miss), computed here without the package."""
    confusion = np.zeros((classes, classes + 1), np.int64)
    for gt, pred in pairs:
        scored = gt != 255
        predicted = np.where(pred == 255, classes, pred)[scored].astype(np.int64)
        np.add.at(confusion, (gt[scored].astype(np.int64), predicted), 1)
    ious = []
    for c in range(classes):
        tp = confusion[c, c]
        fn = confusion[c].sum() - tp
        fp = confusion[:, c].sum() - tp
        ious.append(math.nan if tp + fp + fn == 0 else tp / (tp + fp + fn))
    defined = [v for v in ious if not math.isnan(v)]
    return ious, sum(defined) / len(defined)


@pytest.mark.parametrize("pred_ids", ["train", "label"])
def test_eval_semantic_on_ade20k_equals_an_independent_confusion_matrix(tmp_path, pred_ids):
    labels = write_ade20k(tmp_path / "ade")
    rng = np.random.default_rng(9)
    predictions, pairs = tmp_path / "pred", []
    for name, label in labels.items():
        train_pred = rng.integers(0, 150, label.shape).astype(np.uint8)
        train_pred[label == 0] = 7  # predictions on "other" pixels are free
        write_png(predictions / "nested" / f"{name}.png", train_pred + 1 if pred_ids == "label" else train_pred)
        gt = np.where(label == 0, 255, label.astype(np.int64) - 1)
        pairs.append((gt, train_pred))
    out = tmp_path / "scores.json"
    result = run_cli("eval", "semantic", "--dataset", "ade20k", "--gt", tmp_path / "ade", "--pred", predictions, "--pred-ids", pred_ids,
                     "--json", out)
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    ious, miou = independent_iou(pairs, 150)
    assert list(scores["class_IoU"]) == list(get_dataset("ade20k").labels.classes)  # 150 names in train-id order
    for name, expected in zip(scores["class_IoU"], ious):
        value = scores["class_IoU"][name]
        assert (value is None and math.isnan(expected)) or abs(value - expected) < 1e-12, name
    assert abs(scores["mIoU"] - miou) < 1e-12 and scores["n_images"] == 3
    assert "iIoU" not in scores and "category_IoU" not in scores  # ADE20K defines neither
    assert scores["boundary_width_px"] == {"3": [3], "5": [5], "8": [8], "12": [12]}  # sizes vary: no scaling
    assert 0.0 < scores["boundary_pixel_share"]["3"] <= scores["boundary_pixel_share"]["12"] <= 1.0


def test_eval_semantic_errors_name_the_dataset_file_and_field(tmp_path):
    labels = write_ade20k(tmp_path / "ade", count=1)
    (name,) = labels
    predictions = tmp_path / "pred"
    write_png(predictions / f"{name}.png", np.full(labels[name].shape, 150, np.uint8))
    result = run_cli("eval", "semantic", "--dataset", "ade20k", "--gt", tmp_path / "ade", "--pred", predictions)
    assert result.returncode == 2 and "train id 150 outside 0..149 and 255" in result.stderr
    (predictions / f"{name}.png").rename(predictions / "other.png")
    missing = run_cli("eval", "semantic", "--dataset", "ade20k", "--gt", tmp_path / "ade", "--pred", predictions)
    assert missing.returncode == 2 and f"expected {name}.png under {predictions}" in missing.stderr
    unknown = run_cli("eval", "semantic", "--dataset", "ade21k", "--gt", tmp_path / "ade", "--pred", predictions)
    assert unknown.returncode == 2 and "unknown dataset 'ade21k'" in unknown.stderr
    split = run_cli("eval", "semantic", "--dataset", "ade20k", "--gt", tmp_path / "ade", "--pred", predictions, "--split", "train")
    assert split.returncode == 2 and "training: ade20k split 'train' not found" in split.stderr


# --- label tables --------------------------------------------------------------------------------------------


def test_a_class_table_puts_the_ignored_id_after_the_classes():
    table = class_table(("a", "b", "c"))
    assert table.classes == ("a", "b", "c") and table.num_ids == 4 and table.num_train_ids == 3
    assert table.train_id_of.tolist() == [0, 1, 2, 255] and table.label_id_of_train_id[255] == 3
    assert not table.defines_instance_scores and not table.defines_categories
    # VOC's own colour map (VOClabelcolormap.m): background black, aeroplane (128, 0, 0), ..., person (192, 128, 128)
    palette = default_palette(21)
    assert [tuple(palette[i]) for i in (0, 1, 2, 3, 4, 15, 20)] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0),
                                                                  (0, 0, 128), (192, 128, 128), (0, 64, 128)]
    with pytest.raises(ValueError, match="'a' is listed twice"):
        class_table(("a", "a"))


def test_scores_on_a_class_table_leave_out_what_it_does_not_define():
    table = class_table(("a", "b"))
    accumulator = SemanticAccumulator(table, bands=(1,), pred_ids="train")
    gt = np.array([[0, 0, 1, 2]], np.uint8)  # id 2 is the ignored id
    accumulator.update(np.array([[0, 1, 1, 255]], np.uint8), gt)
    output = accumulator.compute().to_json()
    assert output["class_IoU"] == {"a": 0.5, "b": 0.5} and output["mIoU"] == 0.5
    assert not {"iIoU", "class_iIoU", "IoU_category", "category_IoU"} & set(output)


# --- boundary bands scaled to the maps ----------------------------------------------------------------------


def test_band_widths_scale_with_the_diagonal_rounded_up_to_at_least_one_pixel():
    assert boundary.scaled_widths((3, 5, 8, 12), (128, 256), (1024, 2048)) == (1, 1, 1, 2)
    assert boundary.scaled_widths((3, 5, 8, 12), (512, 1024), (1024, 2048)) == (2, 3, 4, 6)  # 4.0 stays 4
    assert boundary.scaled_widths((3, 5, 8, 12), (1024, 2048), (1024, 2048)) == (3, 5, 8, 12)
    assert boundary.scaled_widths((0, 3), (64, 128), (1024, 2048)) == (0, 1)  # the boundary pixels alone stay so
    assert boundary.scaled_widths((3,), (64, 128), None) == (3,)


def brute_force_band(gt: np.ndarray, evaluated: np.ndarray, width: float) -> np.ndarray:
    """Evaluated pixels within Euclidean distance `width` of a boundary pixel, by checking every pair."""
    boundary_pixels = np.argwhere(boundary.boundary_mask(gt, evaluated))
    ys, xs = np.mgrid[: gt.shape[0], : gt.shape[1]]
    near = np.zeros(gt.shape, bool)
    for y, x in boundary_pixels:
        near |= (ys - y) ** 2 + (xs - x) ** 2 <= width * width
    return near & evaluated[gt]


def test_scaled_bands_record_their_widths_and_their_share_of_the_pixels():
    rng = np.random.default_rng(2)
    gt = np.kron(rng.integers(0, 3, (4, 6)), np.ones((8, 8), np.int64)).astype(np.uint8)  # 32x48, blocks of 8 px
    table = class_table(("a", "b", "c"))
    accumulator = SemanticAccumulator(table, bands=(3, 5, 8, 12), pred_ids="train", band_reference_size=(128, 192))
    accumulator.update(gt, gt)  # 1/4 of the reference size: 1, 2, 2, 3 px
    result = accumulator.compute()
    assert result.boundary_width_px == {3: (1,), 5: (2,), 8: (2,), 12: (3,)}
    for band, width in ((3, 1), (5, 2), (8, 2), (12, 3)):
        expected = brute_force_band(gt, table.evaluated, width).sum() / gt.size
        assert result.boundary_pixel_share[band] == pytest.approx(expected, abs=1e-12)
        assert result.boundary_miou[band] == 1.0
    np.testing.assert_array_equal(accumulator.band_confusion[1], accumulator.band_confusion[2])  # 5 and 8 px coincide
    other = SemanticAccumulator(table, bands=(3, 5, 8, 12), pred_ids="train")
    with pytest.raises(ValueError, match="stated at"):
        accumulator.merge(other)


@pytest.mark.skipif(not SHARED_CAMVID.is_dir(), reason="the real CamVid copy (../shared/data/camvid) is not on this machine")
def test_on_camvid_at_its_native_size_the_narrowest_band_is_a_boundary_measurement():
    """The protocol scores CamVid against its 360x480 labels: the 3 px band holds at most 15% of the evaluated pixels."""
    accumulator = SemanticAccumulator(CAMVID.labels, bands=(3, 5, 8, 12), pred_ids="train", band_reference_size=CAMVID.native_size)
    for frame in CAMVID.frames(SHARED_CAMVID, "val", require_images=False):
        sample = CAMVID.read(frame, with_image=False)
        accumulator.update(np.where(sample.train_ids == 255, 0, sample.train_ids).astype(np.uint8), sample.label_ids)
    result = accumulator.compute()
    assert result.boundary_width_px[3] == (3,)
    assert result.boundary_pixel_share[3] <= 0.15
    assert result.boundary_pixel_share[3] < result.boundary_pixel_share[12] < 0.5


# --- the miniature protocol on CamVid: planning and one short training ------------------------------------------


def sqrt_median_frequency(labels: list[np.ndarray], classes: int) -> list[float]:
    """Independent of the package: per class, pixels over the pixels of the images it is in; sqrt(median / freq)."""
    pixels, present = np.zeros(classes), np.zeros(classes)
    for label in labels:
        counts = np.bincount(label.ravel(), minlength=256)[:classes]
        pixels += counts
        present += (counts > 0) * label.size
    frequency = pixels / present
    return list(np.sqrt(np.median(frequency) / frequency))


def test_the_miniature_suite_on_camvid_takes_its_recipe_input_size_classes_and_weights(tmp_path):
    from alignbench.bench.planning import plan
    from alignbench.bench.recipes import training_config
    from alignbench.bench.suites import load_suites
    from alignbench.bench.tasks import resolve_data

    labels = write_camvid(tmp_path / "camvid")
    sources = resolve_data([f"camvid={tmp_path / 'camvid'}"])
    (suite,) = load_suites(["miniature_alignment_r18"])
    entries, skipped = plan([suite], sources, "miniature", [0])
    assert not skipped and [entry.row.row for entry in entries] == ["fpn", "fapn", "sfnet"]
    fpn = entries[0]
    assert fpn.train == training_config("miniature_camvid", "miniature") and fpn.train.cpu_bf16
    assert fpn.eval_size == fpn.input_size == fpn.flops_size == (192, 256)
    options = fpn.pipeline.build_options
    assert options["num_classes"] == 11
    train_labels = [labels[f"0001TP_{index:06d}"] for index in range(3)]
    assert options["class_weights"] == pytest.approx(sqrt_median_frequency(train_labels, 11), abs=1e-6)
    assert fpn.setup["eval_split"] == "val" and fpn.data.endswith(", val split")
    with pytest.raises(UserError, match="testannot: camvid split 'test' not found"):
        plan([suite], sources, "miniature", [0], eval_split="test")
    synthetic = next(entry for entry in plan([suite], resolve_data(["synthetic-miniature"]), "miniature", [0])[0])
    assert synthetic.train == training_config("miniature", "miniature") and synthetic.eval_size == (128, 256)


def test_training_on_a_camvid_tree_scores_its_eleven_classes(tmp_path):
    write_camvid(tmp_path / "camvid", size=(48, 64))
    out = tmp_path / "scores.json"
    result = run_cli("train", "semantic_fpn_fpn_r18", "--data", f"camvid={tmp_path / 'camvid'}", "--recipe", "miniature_camvid",
                     "--budget", "smoke", "--set", "iterations=2", "--out", tmp_path / "train", "--json", out)
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    metrics = written["metrics"]
    assert written["eval_split"] == "val" and written["data"].startswith(f"camvid at {tmp_path / 'camvid'}")
    assert list(metrics["class_IoU"]) == list(CLASSES) and metrics["n_images"] == 2
    assert "iIoU" not in metrics and "IoU_cat" not in metrics  # CamVid defines neither
    assert set(metrics["band_share"]) == {"3", "5", "8", "12"} and metrics["band_width_px"]["3"] == [1]  # 48x64 of 360x480
    missing = run_cli("train", "semantic_fpn_fpn_r18", "--data", f"camvid={tmp_path / 'camvid'}", "--eval-split", "test",
                      "--budget", "smoke", "--out", tmp_path / "train2")
    assert missing.returncode == 2 and "testannot: camvid split 'test' not found" in missing.stderr


def test_run_all_on_a_camvid_tree_in_two_workers_stores_both_seeds_as_its_own(tmp_path):
    write_camvid(tmp_path / "camvid", size=(48, 64))
    suite = tmp_path / "tiny_camvid.yaml"
    suite.write_text("""\
suite: tiny_camvid
task: semantic
recipe: miniature
metrics: [mIoU, band_3]
baseline: fpn
seeds: [0, 1]
per_data:
  camvid: {recipe: miniature_camvid, input_size: [32, 64]}
rows:
  - {row: fpn, model: semantic_fpn_fpn_r18, options: {neck_channels: 32, head_channels: 32}}
""")
    results = tmp_path / "out" / "results.sqlite"
    run = run_cli("run-all", "--suite", suite, "--data", f"camvid={tmp_path / 'camvid'}", "--budget", "smoke", "--set", "iterations=2",
                  "--workers", "2", "--results", results, "--no-report")
    assert run.returncode == 0, run.stderr
    assert "2 entries, 0 already complete, 2 run, 0 failed" in run.stdout
    assert "run by it" not in run.stdout  # the workers are this run's own, not another run-all on the store
    resolved = json.loads((results.parent / "resolved_config.json").read_text())
    assert resolved["eval_split"] == "val" and resolved["suites"]["tiny_camvid"]["recipe"] == "miniature_camvid"
    assert resolved["suites"]["tiny_camvid"]["rows"]["fpn"]["train"]["class_weighting"] == "sqrt_median_frequency"
