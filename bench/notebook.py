"""Helpers for the analysis notebooks (notebooks/*.ipynb): data, a briefly trained model, captured tensors.

The notebooks stay short and run on the CPU in well under a minute because everything here reuses the
harness: `bench.tasks` resolves the data, `bench.pipeline` builds a model, trains it under its paper's recipe
scaled to the `smoke` budget (or loads given weights), `bench.evaluation.loop` scores it, `bench.runall` fills
a results store, and `models.capture` records what the alignment modules did.

A briefly trained model is trained once and kept in the cache (`$ALIGNBENCH_CACHE/notebooks/`) under the
pipeline's training key (model, options, recipe, data, seed and the code identity: package version and model
definition fingerprint), so the notebooks share it, a re-run loads it in a second, and weights trained by other
code are never loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alignbench import models
from alignbench.bench.data.cache import cache_dir
from alignbench.bench.data.catalog import SemanticSample
from alignbench.bench.data.images import image_to_tensor
from alignbench.bench.data.synthetic import SYNTHETIC_PRESETS
from alignbench.bench.errors import UserError
from alignbench.bench.evaluation.loop import evaluate_semantic_model
from alignbench.bench.pipeline import Pipeline
from alignbench.bench.planning import RunRequest
from alignbench.bench.recipes import BUDGETS, TrainConfig, apply_overrides, parse_overrides, training_config
from alignbench.bench.recipes import budget as get_budget
from alignbench.bench.runall import run_all
from alignbench.bench.suites import default_recipe, load_suites
from alignbench.bench.tasks import DataSource, resolve_data
from alignbench.bench.train import FINAL
from alignbench.metrics.boundary import DEFAULT_BANDS
from alignbench.metrics.labels import CITYSCAPES, LabelSpec
from alignbench.metrics.semantic import SemanticAccumulator, SemanticResult
from alignbench.reports.figures import grid_sample_flow_to_pixels, mean_offset

log = logging.getLogger(__name__)

# The recipe of a model that no built-in suite runs yet, by the model's paper (bench.recipes.RECIPES).
RECIPE_OF_PAPER = {"FaPN": "fapn_semantic", "SFNet": "sfnet", "FPT": "fpt_semantic"}

# Columns of the before / after alignment figure, in this order, for the tensors a FAM reports
# (models/fapn/neck.py and models/sfnet/decoder.py): name in the capture record -> column title.
ALIGNMENT_COLUMNS = {
    "reference": "reference (fine lateral)",
    "upsampled": "upsampled (before)",
    "aligned": "aligned (after)",
    "warped": "warped (after)",
}

# A two-row suite for the results explorer's demo store: FaPN supplementary Table I's FPN baseline and the
# final real-time FaPN, measured at a small input size so that the complexity counts take a second.
DEMO_SUITE = """\
suite: notebook_demo
paper: FaPN
table: Table I
title: "Notebook demo: real-time FPN vs FaPN (FaPN supplementary Table I rows)"
task: semantic
recipe: fapn_realtime
metrics: [mIoU, band_3, band_5, band_8, band_12, band_mean, params_m]
compare: {pairs: [[fpn_r18, fam_fsm_concat_r18]]}
rows:
  - {row: fpn_r18, model: rt_fpn_r18, input_size: [128, 256]}
  - {row: fam_fsm_concat_r18, model: rt_fapn_r18, input_size: [128, 256]}
"""


# --- data ------------------------------------------------------------------------------------------------


def user_path(path: str | Path) -> Path:
    """A path as the user means it: absolute as given, relative to the repository (the folder holding
    pyproject.toml above this package, where `alignbench run-all` is usually run), not to the notebook
    kernel's working directory (notebooks/); the working directory when the package is not in a checkout."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    here = Path(__file__).resolve()
    root = next((folder for folder in here.parents if (folder / "pyproject.toml").is_file()), Path.cwd())
    return root / path


def accuracy_results(frame):
    """The rows of a results DataFrame whose budget measures accuracy (smoke rows left out: they say nothing)."""
    return frame[frame["budget"].map(lambda name: BUDGETS[name].measures_accuracy if name in BUDGETS else True)]


def data_source(data: str | Path = "synthetic") -> DataSource:
    """Any `--data` value: 'synthetic' or a preset such as 'synthetic-miniature' (the built-in scenes, generated into
    the cache on first use, as `run-all` does), 'NAME=PATH' for a dataset of the catalog (e.g. 'camvid=/data/camvid'),
    a dataset file 'FILE.yaml[=ROOT]', or the bare root folder of a Cityscapes tree."""
    spec = str(data)
    if spec not in SYNTHETIC_PRESETS and "=" not in spec and not spec.endswith((".yaml", ".yml")):
        spec = f"cityscapes={spec}"
    return resolve_data([spec])[0]


def load_sample(source: DataSource, index: int = 0, split: str = "val") -> SemanticSample:
    """Frame `index` (sorted by name) of a split: image, label ids, train ids (and instance ids where the dataset
    has them)."""
    frames = source.dataset.frames(source.root, split)
    if not 0 <= index < len(frames):
        raise UserError(f"image index {index}: the {split} split of {source.root} has {len(frames)} frames")
    return source.dataset.read(frames[index])


# --- models ----------------------------------------------------------------------------------------------


def recipe_for(name: str) -> str:
    """The training recipe of a registered model: its built-in suite's, else its paper's semantic recipe."""
    try:
        return default_recipe(name)
    except UserError:
        paper = models.get_info(name).paper
        if paper not in RECIPE_OF_PAPER:
            raise UserError(f"{name}: no recipe known for paper {paper!r}; pass recipe=") from None
        return RECIPE_OF_PAPER[paper]


def notebook_config(name: str, budget: str = "smoke", iterations: int | None = None, recipe: str | None = None) -> TrainConfig:
    """The model's recipe scaled to `budget` (smoke: a few iterations on 64x128 crops, CPU seconds),
    with `iterations` overriding the budget's count."""
    config = training_config(recipe or recipe_for(name), budget)
    if iterations is not None:
        if iterations < 1:
            raise UserError(f"iterations must be at least 1, got {iterations}")
        config = replace(config, iterations=iterations, checkpoint_every=max(1, iterations // 2))
    return config


def trained_model(
    name: str,
    source: DataSource,
    *,
    checkpoint: str | Path | None = None,
    budget: str = "smoke",
    iterations: int | None = None,
    recipe: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    options: dict | None = None,
) -> nn.Module:
    """A registered semantic model (built with `options`) in eval mode on `device`, through bench.pipeline.

    With `checkpoint` (ours, or another format `models.build(checkpoint=...)` reads) its weights are loaded.
    Otherwise it is trained on `source` with its recipe scaled to `budget` (`notebook_config`), once: the
    weights are kept in the cache and later calls load them.
    """
    if models.get_info(name).task != "semantic":
        raise UserError(f"{name}: the notebooks show semantic models; this one is a {models.get_info(name).task} model")
    config = notebook_config(name, budget, iterations, recipe)
    pipeline = Pipeline(name, source, config, get_budget(budget), seed, options=options, checkpoint=checkpoint,
                        train_model=checkpoint is None, device=device)
    return pipeline.model(cache_dir() / "notebooks")


PROTOCOL_SUITE = "miniature_alignment_r18"  # the default run-all's comparison (docs/miniature_protocol.md)
RUN_ALL_RESULTS = "alignbench-output/results.sqlite"  # where `alignbench run-all` writes by default


def protocol_source(suite: str = PROTOCOL_SUITE) -> DataSource:
    """The data a comparison suite trains and evaluates on (the miniature protocol's: synthetic-miniature)."""
    (chosen,) = load_suites([suite])
    return resolve_data(list(chosen.data or ["synthetic"]))[0]


def protocol_model(
    row: str,
    *,
    seed: int = 0,
    device: str = "cpu",
    suite: str = PROTOCOL_SUITE,
    results: str | Path | None = RUN_ALL_RESULTS,
    overrides: dict | None = None,
) -> nn.Module:
    """The model of `row` ("fpn", "fapn", "sfnet", ...) of a comparison suite, trained as that suite trains it
    (its recipe, budget, data, builder options and `seed`): by default the miniature protocol's, so the figures
    show alignment a model has learned.

    The weights come from `alignbench run-all`'s checkpoints beside `results` (relative paths: to the
    repository) when that run finished this very training (same training key: model, options, recipe, data,
    seed and code), else from the notebook cache, else the model is trained there once (CPU minutes).
    `overrides`: `--set`-style recipe values (e.g. {"iterations": 2}), for quick checks.
    """
    (chosen,) = load_suites([suite])
    rows = {entry.row: entry for entry in chosen.rows}
    if row not in rows:
        raise UserError(f"row {row!r}: suite {chosen.name} has rows {', '.join(rows)}")
    entry = rows[row]
    budget_name = chosen.budget or "miniature"
    parsed = parse_overrides([f"{key}={value}" for key, value in (overrides or {}).items()])
    source = protocol_source(suite)
    recipe = chosen.recipe_for(source.dataset.name)
    config, budget = apply_overrides(training_config(recipe, budget_name, entry.train), get_budget(budget_name), parsed)
    pipeline = Pipeline(entry.model, source, config, budget, seed, options=dict(entry.options), device=device)
    run_all_checkpoints = user_path(results).parent / "checkpoints" if results is not None else None
    if run_all_checkpoints is not None and (pipeline.checkpoint_dir(run_all_checkpoints) / FINAL).is_file():
        log.info("%s (seed %d): weights of the run-all in %s", entry.model, seed, run_all_checkpoints)
        return pipeline.model(run_all_checkpoints)
    return pipeline.model(cache_dir() / "notebooks")


# --- inference with capture ------------------------------------------------------------------------------


@dataclass
class CapturedRun:
    """One image through a model: the train-id prediction at the image size and what the FAMs reported."""

    image: np.ndarray  # (H, W, 3) uint8
    logits: torch.Tensor  # (1, classes, H, W), on the CPU
    prediction: np.ndarray  # (H, W) uint8 train ids
    record: models.CaptureRecord


def run_captured(model: nn.Module, image: np.ndarray, device: str = "cpu") -> CapturedRun:
    """Predict `image` under `models.capture`, with logits upsampled to the image size (as the evaluator does)."""
    tensor = image_to_tensor(image)[None].to(device)
    with torch.inference_mode(), models.capture(model) as record:
        logits = model.eval()(tensor)
        if logits.shape[-2:] != tensor.shape[-2:]:
            logits = F.interpolate(logits, size=tensor.shape[-2:], mode="bilinear", align_corners=False)
    prediction = logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
    return CapturedRun(image, logits.cpu(), prediction, record)


def _levels_fine_to_coarse(record: models.CaptureRecord) -> list[str]:
    """The record's levels, largest maps first (p2, p3, p4), ties by name."""
    def size(level: str) -> int:
        tensor = next(iter(record[level].values()))
        return int(tensor.shape[-2] * tensor.shape[-1])

    return sorted(record, key=lambda level: (-size(level), level))


def alignment_panels(record: models.CaptureRecord, index: int = 0) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, np.ndarray]]:
    """Columns and flows for `reports.figures.alignment_figure` from one capture (batch element `index`).

    Columns are the reported maps of `ALIGNMENT_COLUMNS`, {title: {level: (C, H, W)}}: for FaPN's FAM the
    upsampled input and aligned output (FaPN Fig. 6), for SFNet's FAM the plain bilinear upsampling and the
    warped map (SFNet Fig. 2 / 4), each beside the fine reference. Flows come from `level_flows`.
    """
    levels = _levels_fine_to_coarse(record)
    if not levels:
        raise ValueError("the capture record is empty: the model has no alignment modules (e.g. plain FPN)")
    columns: dict[str, dict[str, torch.Tensor]] = {}
    for key, title in ALIGNMENT_COLUMNS.items():
        if all(key in record[level] for level in levels):
            columns[title] = {level: record[level][key][index] for level in levels}
    return columns, level_flows(record, index)


def level_flows(record: models.CaptureRecord, index: int = 0) -> dict[str, np.ndarray]:
    """{level: (2, H, W) flow (x, y) in pixels of the level's grid}, fine to coarse.

    SFNet's semantic flow is converted from its grid_sample units (`grid_sample_flow_to_pixels`); a
    deformable conv's offsets (FaPN's FAM, SFNet's DCN variant) are summarised by their mean over the
    sampling points, weighted by the modulation masks where there are some (`mean_offset`).
    """
    flows = {}
    for level in _levels_fine_to_coarse(record):
        tensors = record[level]
        if "flow" in tensors:
            flows[level] = grid_sample_flow_to_pixels(tensors["flow"][index])
        elif "offset" in tensors:
            mask = tensors.get("mask")
            flows[level] = mean_offset(tensors["offset"][index], None if mask is None else mask[index])
    return flows


def flow_summary(flows: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per level: grid size and the mean and largest flow magnitude in pixels (rows for a table)."""
    rows = []
    for level, flow in flows.items():
        magnitude = np.hypot(flow[0], flow[1])
        rows.append({"level": level, "size": f"{flow.shape[1]}x{flow.shape[2]}",
                     "mean |flow| (px)": float(magnitude.mean()), "max |flow| (px)": float(magnitude.max())})
    return rows


# --- scores ----------------------------------------------------------------------------------------------


def image_scores(prediction: np.ndarray, label_ids: np.ndarray, bands: Sequence[int] = (), labels: LabelSpec = CITYSCAPES,
                 band_reference_size: tuple[int, int] | None = None) -> SemanticResult:
    """Scores of one image (train-id prediction, label-id ground truth of the label table `labels`, e.g. a data
    source's `source.dataset.labels`), e.g. the per-image mIoU of FPT Fig. 5."""
    accumulator = SemanticAccumulator(labels, bands=bands, pred_ids="train", band_reference_size=band_reference_size)
    accumulator.update(prediction, label_ids)
    return accumulator.compute()


def evaluate(
    model: nn.Module,
    source: DataSource,
    device: str = "cpu",
    max_images: int | None = None,
    max_side: int | None = None,
    bands: Sequence[int] = DEFAULT_BANDS,
) -> SemanticResult:
    """The harness's evaluation of `model` on the first `max_images` frames of the val split (all when None),
    inputs downscaled so that their longer side is at most `max_side`: per-class IoU, band mIoU, ..."""
    frames = source.dataset.frames(source.root, "val")
    if max_images:
        frames = frames[:max_images]
    return evaluate_semantic_model(model, source.dataset, frames, device, max_side=max_side, bands=bands).compute()


# --- results store ---------------------------------------------------------------------------------------


def demo_results(path: str | Path | None = None, device: str = "cpu") -> Path:
    """A tiny results store made by `run-all` itself: `DEMO_SUITE` on the synthetic data, smoke budget.

    Default place: the cache (`notebooks/demo/results.sqlite`). Entries already in the store are skipped,
    so after the first call (about a CPU minute) this returns at once.
    """
    path = Path(path) if path is not None else cache_dir() / "notebooks" / "demo" / "results.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    suite = path.parent / "notebook_demo.yaml"
    suite.write_text(DEMO_SUITE)
    summary = run_all(RunRequest(suites=(str(suite),), data=("synthetic",), budget="smoke"), path, device=device,
                      progress=False, report=False)
    if summary.failed:
        raise RuntimeError(f"demo results: {len(summary.failed)} entries failed: {summary.failed[0]}")
    return path
