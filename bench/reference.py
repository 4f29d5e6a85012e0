"""Access to the reference implementations that benchmarks and tests compare against.

cityscapesscripts 2.3.0's evaluation modules call `np.in1d`, which NumPy 2.4 removed. They are imported
only here, only by benchmarks and tests, never by the evaluation commands; on a NumPy without `in1d` a
shim with the same meaning (`np.isin` on the flattened array) is installed first.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np


def _install_in1d_shim() -> None:
    if not hasattr(np, "in1d"):

        def in1d(values, test_values, assume_unique=False, invert=False):
            return np.isin(np.ravel(values), test_values, assume_unique=assume_unique, invert=invert)

        np.in1d = in1d


def cityscapes_semantic_reference():
    """cityscapesscripts' evalPixelLevelSemanticLabeling, quiet and writing no JSON file."""
    _install_in1d_shim()
    # here: only benchmarks and tests load the reference (it imports PIL), after the in1d shim
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as reference

    reference.args.quiet = True
    reference.args.JSONOutput = False
    reference.args.evalInstLevelScore = True
    reference.args.evalPixelAccuracy = False
    return reference


def cityscapes_panoptic_reference():
    """cityscapesscripts' evalPanopticSemanticLabeling (a port of panopticapi's pq_compute)."""
    _install_in1d_shim()
    # here: only benchmarks and tests load the reference (it imports PIL and multiprocessing), after the in1d shim
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as reference

    return reference


def cityscapes_panoptic_scores(gt_json, gt_dir, pred_json, pred_dir) -> dict:
    """PQ by cityscapesscripts on its single-process path (`pq_compute_single_core`, then `average_pq`).

    Its evaluatePanoptic always starts one process per CPU and writes a results file, so the pieces it
    is made of are called directly, with the same pairing by image id; its progress prints are captured.
    Returns its results dict: "All", "Things", "Stuff" ({pq, sq, rq, n}) and "per_class" {id: {pq, sq, rq}}.
    """
    reference = cityscapes_panoptic_reference()
    with open(gt_json) as handle:
        gt = json.load(handle)
    with open(pred_json) as handle:
        pred = json.load(handle)
    categories = {entry["id"]: entry for entry in gt["categories"]}
    predictions = {entry["image_id"]: entry for entry in pred["annotations"]}
    # it writes each prediction segment's area into the annotation: give it copies
    matched = [(annotation, copy.deepcopy(predictions[annotation["image_id"]])) for annotation in gt["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        statistics = reference.pq_compute_single_core(0, matched, str(gt_dir), str(pred_dir), categories)
    return reference.average_pq(statistics, categories)


def cityscapes_create_panoptic(gt_fine_dir, out_dir, split: str) -> None:
    """cityscapesscripts' preparation/createPanopticImgs conversion of one split (label ids), quietly."""
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic  # here: only tests convert (it imports PIL)

    with contextlib.redirect_stdout(io.StringIO()):
        convert2panoptic(str(gt_fine_dir), str(out_dir), useTrainId=False, setNames=[split])
