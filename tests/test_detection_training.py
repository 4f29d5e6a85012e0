"""End to end on synthetic data: export a tiny synthetic set to COCO, train detectors a few SGD steps,
predict, and evaluate with metrics.coco / metrics.panoptic (and the `alignbench eval coco` CLI)."""

import json
import logging
import math

import pytest
import torch

from alignbench import models
from alignbench.bench.cli import main
from alignbench.bench.data.coco import CocoDetectionDataset, CocoPanopticDataset, export_coco
from alignbench.bench.data.synthetic import SynthSpec, write_dataset
from alignbench.bench.evaluation.detection import (
    coco_detections,
    evaluate_detector,
    evaluate_panoptic_model,
    panoptic_training_pair,
)
from alignbench.metrics.coco import METRIC_NAMES

log = logging.getLogger(__name__)
SMALL = {"min_size": 128, "max_size": 256}


@pytest.fixture(scope="module")
def coco_tree(tmp_path_factory):
    """3 train and 2 val synthetic scenes of 128x256, exported to COCO instances and panoptic files."""
    root = tmp_path_factory.mktemp("synthetic_coco")
    write_dataset(root, SynthSpec(n_train=3, n_val=2, size=(128, 256), seed=11), progress=False)
    return {split: export_coco(root, root / "coco", split) for split in ("train", "val")}


def _sgd(model):
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005, momentum=0.9, weight_decay=1e-4)


def _train(model, images, targets, steps):
    """`steps` SGD steps on one fixed batch; the total loss of each step."""
    model.train()
    optimizer = _sgd(model)
    totals = []
    for _ in range(steps):
        losses = model.loss(images, targets)
        total = sum(losses.values())
        assert all(math.isfinite(float(v.detach())) for v in losses.values()), losses
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    return totals


def _check_scores(result):
    assert set(result.metrics) == set(METRIC_NAMES)
    for value in result.metrics.values():
        assert math.isnan(value) or 0.0 <= value <= 1.0


def test_faster_rcnn_loss_decreases_and_its_results_evaluate(coco_tree, tmp_path):
    torch.manual_seed(0)
    train = CocoDetectionDataset(coco_tree["train"].instances_json, coco_tree["train"].image_dir, with_masks=False)
    val = CocoDetectionDataset(coco_tree["val"].instances_json, coco_tree["val"].image_dir, with_masks=False)
    assert train.categories.num_classes == 8
    batch = [train[i].to_torch() for i in range(2)]
    images, targets = [image for image, _ in batch], [target for _, target in batch]
    model = models.build(
        "faster_rcnn_fpn_r50", num_classes=8, **SMALL, rcnn_options={"box_score_thresh": 0.0, "box_detections_per_img": 50}
    )
    totals = _train(model, images, targets, steps=6)
    log.info("Faster R-CNN total loss per step: %s", totals)
    assert totals[-1] < totals[0] and sum(totals[-2:]) < sum(totals[:2]), totals

    results = evaluate_detector(model, val, iou_types=("bbox",))
    bbox = results["bbox"]
    assert bbox.n_images == 2 and 0 < bbox.n_detections <= 100
    _check_scores(bbox)

    # The same detections as a results file through the CLI.
    with torch.no_grad():
        outputs = model.predict([val[i].to_torch()[0] for i in range(len(val))])
    detections = coco_detections(outputs, val.image_ids, val.categories)
    assert {d["category_id"] for d in detections} <= set(val.categories.ids)
    dt_path, out_path = tmp_path / "detections.json", tmp_path / "ap.json"
    dt_path.write_text(json.dumps(detections))
    assert main(["eval", "coco", "--gt", str(val.annotation_file), "--dt", str(dt_path), "--iou-type", "bbox",
                 "--json", str(out_path)]) == 0
    written = json.loads(out_path.read_text())
    assert written["n_detections"] == len(detections) == bbox.n_detections
    assert written["stats"] == pytest.approx(list(bbox.stats))


def test_mask_rcnn_with_fapn_gives_bbox_and_segm_results(coco_tree):
    torch.manual_seed(0)
    train = CocoDetectionDataset(coco_tree["train"].instances_json, coco_tree["train"].image_dir)
    val = CocoDetectionDataset(coco_tree["val"].instances_json, coco_tree["val"].image_dir)
    image, target = train[0].to_torch()
    model = models.build(
        "mask_rcnn_fapn_r50", num_classes=8, **SMALL, rcnn_options={"box_score_thresh": 0.0, "box_detections_per_img": 20}
    )
    _train(model, [image], [target], steps=2)
    results = evaluate_detector(model, val, iou_types=("bbox", "segm"))
    assert results["bbox"].n_detections == results["segm"].n_detections > 0
    for result in results.values():
        _check_scores(result)


def test_panoptic_fpn_trains_and_feeds_the_panoptic_accumulator(coco_tree):
    torch.manual_seed(0)
    export = coco_tree["train"]
    train = CocoPanopticDataset(export.panoptic_json, export.panoptic_dir, export.image_dir)
    val = CocoPanopticDataset(coco_tree["val"].panoptic_json, coco_tree["val"].panoptic_dir, coco_tree["val"].image_dir)
    labels = train.semantic_labels()
    image, target = panoptic_training_pair(train[0], train.things, labels)
    assert target["semantic"].shape == image.shape[-2:] and int(target["semantic"][target["semantic"] != 255].max()) <= 11
    assert len(target["boxes"]) == len(target["labels"]) == len(target["masks"]) > 0
    model = models.build(
        "panoptic_fpn_r50", num_classes=train.things.num_classes, num_stuff_classes=train.stuff.num_classes,
        stuff_area_limit=64, score_threshold=0.0, **SMALL, rcnn_options={"box_score_thresh": 0.0, "box_detections_per_img": 20},
    )
    totals = _train(model, [image], [target], steps=2)
    assert all(math.isfinite(total) for total in totals)
    result = evaluate_panoptic_model(model, val)
    assert result.n_images == 2
    # The predictions reached the accumulator as segments (matched or not).
    assert sum(scores["tp"] + scores["fp"] for scores in result.per_class.values()) > 0
    scores = result.to_json()
    assert set(scores) >= {"All", "Things", "Stuff", "per_class"}
    for group in ("All", "Things", "Stuff"):
        pq = scores[group]["pq"]
        assert pq is None or 0.0 <= pq <= 1.0
