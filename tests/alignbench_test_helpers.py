"""Helpers shared by the tests.

Importable as `alignbench_test_helpers` (pytest puts tests/ on sys.path); the name is unique so that it
collides with no installed package.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def perturb(label_ids: np.ndarray, rng: np.random.Generator, fraction: float = 0.2) -> np.ndarray:
    """A prediction: the ground truth shifted by a pixel, with random label ids sprinkled in.

    The random ids cover 0..33, so predictions of ignored ids and of classes absent from an image occur.
    """
    prediction = np.roll(label_ids, shift=(1, -1), axis=(0, 1)).copy()
    noise = rng.random(label_ids.shape) < fraction
    prediction[noise] = rng.integers(0, 34, int(noise.sum()))
    return prediction.astype(np.uint8)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args, env: dict | None = None, cwd: Path | None = None) -> CliResult:
    """Run `python -m alignbench ARGS` in a subprocess, as a user would.

    It runs outside the source tree by default, so it exercises the installed package.
    """
    completed = subprocess.run(
        [sys.executable, "-m", "alignbench", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or tempfile.gettempdir(),
        timeout=600,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def assert_same_scores(first, second, abs_tolerance: float = 0.0) -> None:
    """Two nested score dicts are equal, NaN (or None) equal to NaN, floats within `abs_tolerance`."""
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


def assert_few_sgd_steps_lower_the_loss(model, loss_of, steps: int = 3, factor: float = 0.9) -> None:
    """Train `model` for `steps` SGD steps (lr 0.01, momentum 0.9) on one fixed batch and check that the loss
    falls below `factor` times its start. `loss_of(model)` returns the scalar loss of that batch; it is
    evaluated with the same seed every time, so dropout / DropBlock masks do not change between calls."""
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def loss():
        torch.manual_seed(7)
        return loss_of(model)

    with torch.no_grad():
        before = loss().item()
    for _ in range(steps):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    with torch.no_grad():
        after = loss().item()
    assert after < factor * before, (before, after)


def four_iteration_training(folder: Path):
    """The trainer tests' set-up: two 64x128 synthetic training scenes under `folder`, the real-time FaPN recipe
    at the smoke budget cut to 4 iterations of 32x64 crops with a checkpoint at 2, and a maker of a fresh
    (seed 0) rt_fpn_r18. Returns (dataset, config, fresh)."""
    import torch

    from alignbench import models
    from alignbench.bench.data.catalog import SemanticSplit
    from alignbench.bench.data.cityscapes import CITYSCAPES_DATASET
    from alignbench.bench.data.synthetic import SynthSpec, write_dataset
    from alignbench.bench.recipes import training_config

    write_dataset(folder / "data", SynthSpec(n_train=2, n_val=1, size=(64, 128)), progress=False)
    config = training_config("fapn_realtime", "smoke")
    config = type(config)(**{**config.__dict__, "iterations": 4, "checkpoint_every": 2, "crop": (32, 64)})

    def fresh():
        torch.manual_seed(0)
        return models.build("rt_fpn_r18")

    return SemanticSplit.of(CITYSCAPES_DATASET, folder / "data", "train"), config, fresh


def interrupt_on_call(model, call: int) -> None:
    """Make the `call`-th call of `model.loss` raise KeyboardInterrupt (a run killed mid-training)."""
    calls = {"n": 0}
    original = model.loss

    def failing_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    model.loss = failing_loss


def to_detectron2_pyramid_rules(model, body: str, neck: str) -> list:
    """(pattern, replacement) rules from our ResNet body (under `body`) and FPN / FaPN neck (under `neck`) to the
    keys detectron2 and FaPN's code save them under: the tests write checkpoints in the authors' layout with them.
    Written apart from alignbench.models.detectron2's own rules on purpose, so that a wrong mapping there fails."""
    res = lambda m: f"backbone.bottom_up.res{int(m[1]) + 1}.{m[2]}"  # noqa: E731
    if hasattr(model.neck, "top_lateral"):  # FaPN (EMI-Group/FaPN's fan_align* layers)
        neck_rules = [
            (rf"{neck}\.top_lateral\.(.+)", r"backbone.fan_align5.\1"),
            (rf"{neck}\.lateral\.p(\d)\.attention\.(.+)", r"backbone.fan_align\1.lateral_conv.conv_atten.\2"),
            (rf"{neck}\.lateral\.p(\d)\.reduce\.(.+)", r"backbone.fan_align\1.lateral_conv.conv.\2"),
            (rf"{neck}\.align\.p(\d)\.offset\.(.+)", r"backbone.fan_align\1.offset.\2"),
            (rf"{neck}\.align\.p(\d)\.dcn\.(.+)", r"backbone.fan_align\1.dcpack_L2.\2"),
            (rf"{neck}\.output\.p(\d)\.(.+)", r"backbone.fpn_output\1.\2"),
        ]
    else:
        neck_rules = [
            (rf"{neck}\.lateral\.p(\d)\.(.+)", r"backbone.fpn_lateral\1.\2"),
            (rf"{neck}\.output\.p(\d)\.0\.(.+)", r"backbone.fpn_output\1.\2"),
        ]
    return [
        (rf"{body}\.conv1\.weight", "backbone.bottom_up.stem.conv1.weight"),
        (rf"{body}\.bn1\.(.+)", r"backbone.bottom_up.stem.conv1.norm.\1"),
        (rf"{body}\.layer(\d)\.(\d+)\.conv(\d)\.weight", lambda m: f"{res(m)}.conv{m[3]}.weight"),
        (rf"{body}\.layer(\d)\.(\d+)\.bn(\d)\.(.+)", lambda m: f"{res(m)}.conv{m[3]}.norm.{m[4]}"),
        (rf"{body}\.layer(\d)\.(\d+)\.downsample\.0\.weight", lambda m: f"{res(m)}.shortcut.weight"),
        (rf"{body}\.layer(\d)\.(\d+)\.downsample\.1\.(.+)", lambda m: f"{res(m)}.shortcut.norm.{m[3]}"),
        *neck_rules,
    ]
