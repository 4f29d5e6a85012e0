"""Shared fixtures: small generated Cityscapes trees and predictions, a CLI runner."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bench.data.synthetic import SynthSpec, write_dataset
from bench.io import write_png

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` skip cleanly when no CUDA device is present."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        has_cuda = False
    if has_cuda:
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


def perturb(label_ids: np.ndarray, rng: np.random.Generator, fraction: float = 0.2) -> np.ndarray:
    """A prediction: the ground truth shifted by a pixel, with random label ids sprinkled in.

    The random ids cover 0..33, so predictions of ignored ids and of classes absent from an image occur.
    """
    prediction = np.roll(label_ids, shift=(1, -1), axis=(0, 1)).copy()
    noise = rng.random(label_ids.shape) < fraction
    prediction[noise] = rng.integers(0, 34, int(noise.sum()))
    return prediction.astype(np.uint8)


@dataclass
class PredictionSet:
    gt_root: Path
    pred_dir: Path
    predictions: dict  # frame name -> label-id prediction


@pytest.fixture
def predictions(small_tree, tmp_path) -> PredictionSet:
    """Perturbed label-id predictions for the small tree's val split, written as PNGs."""
    from bench.data.cityscapes import find_frames, read_frame

    rng = np.random.default_rng(3)
    pred_dir = tmp_path / "pred"
    result = {}
    for frame in find_frames(small_tree, "val"):
        sample = read_frame(frame, with_image=False)
        prediction = perturb(sample.label_ids, rng)
        write_png(pred_dir / frame.city / f"{frame.name}_pred.png", prediction)
        result[frame.name] = prediction
    return PredictionSet(small_tree, pred_dir, result)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> CliResult:
    """Run `python -m bench ARGS` in a subprocess, as a user would."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or REPO_ROOT,
        timeout=600,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def cli():
    return run_cli


def assert_same_scores(first, second, abs_tolerance: float = 0.0) -> None:
    """Two nested score dicts are equal, NaN (or None) equal to NaN, floats within `abs_tolerance`."""
    import math

    if isinstance(first, dict):
        assert isinstance(second, dict) and set(first) == set(second), (first, second)
        for key in first:
            assert_same_scores(first[key], second[key], abs_tolerance)
        return
    undefined_first = first is None or (isinstance(first, float) and math.isnan(first))
    undefined_second = second is None or (isinstance(second, float) and math.isnan(second))
    assert undefined_first == undefined_second, (first, second)
    if undefined_first:
        return
    if isinstance(first, float) or isinstance(second, float):
        assert abs(first - second) <= abs_tolerance, (first, second)
    else:
        assert first == second, (first, second)
