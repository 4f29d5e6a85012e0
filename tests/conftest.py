"""Shared fixtures: small generated Cityscapes trees and predictions, a CLI runner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from alignbench_test_helpers import perturb, run_cli

from alignbench.bench.data.synthetic import SynthSpec, write_dataset
from alignbench.bench.io import write_png


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` skip cleanly when no CUDA device is present."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def small_tree(tmp_path_factory) -> Path:
    """A synthetic Cityscapes tree: 2 train and 4 val scenes of 64x128."""
    root = tmp_path_factory.mktemp("cityscapes")
    write_dataset(root, SynthSpec(n_train=2, n_val=4, size=(64, 128), seed=7), progress=False)
    return root


@dataclass
class PredictionSet:
    gt_root: Path
    pred_dir: Path
    predictions: dict  # frame name -> label-id prediction


@pytest.fixture
def predictions(small_tree, tmp_path) -> PredictionSet:
    """Perturbed label-id predictions for the small tree's val split, written as PNGs."""
    from alignbench.bench.data.cityscapes import find_frames, read_frame

    rng = np.random.default_rng(3)
    pred_dir = tmp_path / "pred"
    result = {}
    for frame in find_frames(small_tree, "val"):
        sample = read_frame(frame, with_image=False)
        prediction = perturb(sample.label_ids, rng)
        write_png(pred_dir / frame.city / f"{frame.name}_pred.png", prediction)
        result[frame.name] = prediction
    return PredictionSet(small_tree, pred_dir, result)


@pytest.fixture
def cli():
    return run_cli
