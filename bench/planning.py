"""Planning a `run-all`: which suites, on which data and budget, and one entry per (suite, row, seed).

What runs (`chosen_suites`):
- no --suite and no --budget (or --budget miniature): the default run (`default_run_suites`), the miniature
  protocol (bench/suites/miniature_alignment_r18.yaml: FPN, FaPN and SFNet necks in one 64-channel ResNet-18
  Semantic-FPN scaffold, trained from scratch, 3 seeds, mIoU and boundary bands with confidence intervals, params /
  GMACs and CPU latency; docs/miniature_protocol.md) on the built-in `synthetic-miniature` scenes or the `--data`
  given (e.g. camvid=PATH), plus, on the built-in scenes only, a fidelity pass: every paper suite restricted to its
  params / GMACs columns, counted from the models' definitions with no training, no accuracy and no speed (no
  data changes those counts, so a run on other data leaves it out);
- --budget smoke|short|paper and no --suite: every paper suite with all its metrics (smoke: the pipeline
  check the tests use; it says nothing about accuracy);
- --suite S: those suites, with their own metrics.

An entry's config hash covers the experiment (model, data, evaluated split, recipe, budget, seed, weights files:
its setup hash) and the code (package version and model definition fingerprint, bench.provenance). Entries that
share a trained model (same model, data, recipe, budget, seed, weights and code: a "training key") share one
`Pipeline`, so they are trained once and evaluated together.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from alignbench import models
from alignbench.bench import distributed, provenance
from alignbench.bench.errors import UserError
from alignbench.bench.pipeline import Evaluation, Pipeline
from alignbench.bench.recipes import NO_OVERRIDES, Budget, Overrides, TrainConfig, apply_overrides, training_config
from alignbench.bench.recipes import budget as get_budget
from alignbench.bench.suites import Suite, SuiteRow, load_suites
from alignbench.bench.tasks import DataSource, resolve_data, task_runner
from alignbench.metrics.vocabulary import METRICS

EVALUATION_VERSION = 2  # bump when the evaluation of a finished model changes meaning (2: band widths scaled to the maps)
MINIATURE_SUITE = "miniature_alignment_r18"  # the default run's comparison (docs/miniature_protocol.md)


@dataclass(frozen=True)
class RunRequest:
    """What a `run-all` asks for, as the command line says it (plain data: worker processes and cluster jobs plan
    the same request again).

    `suites`: names or suite files (None: `chosen_suites`); `data`: `--data` values (None: the suites' stated data,
    else synthetic); `seeds` None: each suite's own; `checkpoints` / `backbone_weights` map a model name (or "*",
    every row) to a weights file; `eval_split`: the split evaluated."""

    suites: tuple[str, ...] | None = None
    data: tuple[str, ...] | None = None
    budget: str | None = None
    seeds: tuple[int, ...] | None = None
    overrides: Overrides = NO_OVERRIDES
    checkpoints: Mapping[str, str] | None = None
    backbone_weights: Mapping[str, str] | None = None
    eval_split: str = "val"


@dataclass(frozen=True)
class Entry:
    suite: Suite
    row: SuiteRow
    seed: int
    source: DataSource
    budget: Budget
    train: TrainConfig
    input_size: tuple[int, int]  # where speed is measured (the row's or the model's paper input size)
    eval_size: tuple[int, int] | None  # the row's stated input size, None: each image's own size
    flops_size: tuple[int, int]  # where GMACs are counted: the row's size, else the size the paper counts at
    pipeline: Pipeline  # builds, trains and evaluates the row's model (shared by entries with one training key)
    overrides: Overrides = NO_OVERRIDES  # `--set` values (already applied to `train`, `budget` and `eval_size`)
    eval_split: str = "val"

    @property
    def training_key(self) -> str:
        return self.pipeline.training_key

    @property
    def data(self) -> str:
        """What the numbers were measured on: the data source and the evaluated split."""
        return f"{self.source.description}, {self.eval_split} split"

    @property
    def setup(self) -> dict:
        """The experiment, without the code that runs it (weights files by sha256, only when given)."""
        return {
            "model": self.row.model,
            "task": self.suite.task,
            "data": self.source.description,
            "eval_split": self.eval_split,
            "budget": self.budget.name,
            "train": self.train.to_json(),
            "detector_options": self.budget.detector_options,
            "seed": self.seed,
            "metrics": list(self.suite.metrics),
            "input_size": list(self.input_size),
            "flops_size": list(self.flops_size),
            "eval_size": list(self.eval_size) if self.eval_size else None,
            **({"options": dict(self.row.options)} if self.row.options else {}),  # the row's builder keywords
            "evaluation": {"version": EVALUATION_VERSION, "max_images": self.budget.eval_max_images,
                           "max_side": self.budget.eval_max_side, "timing_iterations": self.budget.timing_iterations},
            **self.pipeline.weights,
            **({"overrides": self.overrides.to_json()} if self.overrides else {}),
        }

    @property
    def config(self) -> dict:
        """The setup and the code identity (package version, model fingerprint) of the model it measures."""
        return {**self.setup, "code": self.pipeline.code}

    @property
    def setup_hash(self) -> str:
        return provenance.digest(self.setup)

    @property
    def config_hash(self) -> str:
        return provenance.digest(self.config)

    @property
    def evaluation(self) -> Evaluation:
        return Evaluation(tuple(self.suite.metrics), self.eval_size, self.input_size, self.flops_size)


@dataclass
class Plan:
    """A request resolved: the suites, budget and data it runs, its data sources and entries, and notes on suites
    no data source supports."""

    request: RunRequest
    suites: list[Suite]
    budget: str
    data: list[str]
    sources: list[DataSource]
    entries: list[Entry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def make_plan(request: RunRequest, device: str = "cpu", progress: bool = False) -> Plan:
    """Choose the suites (a bad suite file stops here, before anything is written), resolve budget and data (rank 0
    generates synthetic data first, the other ranks then find it) and plan every entry."""
    chosen = chosen_suites(list(request.suites) if request.suites else None, request.budget, with_fidelity=not request.data)
    budget, data = resolve_defaults(chosen, request.budget, list(request.data) if request.data else None)
    with distributed.main_first():
        sources = resolve_data(data, progress=progress)
    entries, skipped = plan(chosen, sources, budget, list(request.seeds) if request.seeds else None, device=device, progress=progress,
                            checkpoints=request.checkpoints, backbone_weights=request.backbone_weights,
                            overrides=request.overrides, eval_split=request.eval_split)
    return Plan(request, chosen, budget, data, sources, entries, skipped)


def weights_for(row: SuiteRow, given: Mapping[str, Path | str] | None) -> Path | str | None:
    """The weights file of a row among `given` ({model name or "*": path}): its model's, else the one for all."""
    given = given or {}
    return given.get(row.model, given.get("*"))


def plan(
    suites: list[Suite], sources: list[DataSource], budget_name: str, seeds: list[int] | None, device: str = "cpu", progress: bool = False,
    checkpoints: Mapping[str, Path | str] | None = None, backbone_weights: Mapping[str, Path | str] | None = None,
    overrides: Overrides = NO_OVERRIDES, eval_split: str = "val",
) -> tuple[list[Entry], list[str]]:
    """All entries to run, and notes on suites no data source supports.

    `seeds` None: each suite's own seeds (a comparison suite's `seeds`), else seed 0. Each suite runs on the first
    source of its task, with its recipe and input size for that dataset (`Suite.per_data`).

    `checkpoints` / `backbone_weights` map a model name (or "*", every row) to a weights file; a suite
    row's own `checkpoint:` comes first.
    """
    budget = replace(get_budget(budget_name), **overrides.budget)
    entries, skipped = [], []
    runners: dict[tuple, object] = {}  # one task runner per (task, data): its eval split is read once
    pipelines: dict[tuple, Pipeline] = {}
    for suite in suites:
        source = next((s for s in sources if s.supports(suite.task)), None)
        if source is None:
            skipped.append(f"{suite.name}: no {suite.task} data among --data")
            continue
        runner = runners.setdefault((suite.task, source), task_runner(suite.task, source, eval_split))
        rows = {row.key: row for row in suite.reference_table().rows}
        dataset = source.dataset.name
        for row in suite.rows:
            stated = (overrides.evaluation.get("eval_size") or row.input_size or suite.input_size_for(dataset)
                      or rows[row.row].input_size)
            info = models.get_info(row.model)
            size = stated or info.input_size
            flops_size = stated or info.flops_input_size or info.input_size  # e.g. SFNet's GFLOPs at 1024 x 1024
            train, _ = apply_overrides(training_config(suite.recipe_for(dataset), budget.name, row.train), budget, overrides)
            checkpoint = row.checkpoint or weights_for(row, checkpoints)
            backbone = weights_for(row, backbone_weights)
            options = json.dumps(row.options, sort_keys=True, default=str)  # builder keywords: part of the model's identity
            for seed in seeds if seeds is not None else (suite.seeds or [0]):
                identity = (row.model, options, suite.task, source, train, seed, str(checkpoint), str(backbone))
                if identity not in pipelines:
                    pipelines[identity] = Pipeline(
                        row.model, source, train, budget, seed, options=row.options, checkpoint=checkpoint, backbone_weights=backbone,
                        train_model=checkpoint is None, device=device, progress=progress, eval_split=eval_split, runner=runner,
                    )
                entries.append(Entry(suite, row, seed, source, budget, train, tuple(size), tuple(stated) if stated else None,
                                     tuple(flops_size), pipelines[identity], overrides, eval_split))
    for pipeline in pipelines.values():
        # every rank, in one order: the build options may export shared data under distributed.main_first (a
        # collective), so they must not be first needed inside rank 0's store checks
        pipeline.code  # noqa: B018
    return entries, skipped


def default_run_suites(with_fidelity: bool = True) -> list[Suite]:
    """The default run (`alignbench run-all` without --suite or --budget): the miniature protocol's suite with all
    its metrics, then (`with_fidelity`) every paper suite restricted to its params / GMACs columns (the vocabulary's
    "complexity" evaluator) and titled so; paper suites without such columns are left out. Those rows measure nothing
    that needs training (bench.pipeline.needs_trained_model), so only the miniature suite trains."""
    suites = load_suites()
    chosen = [suite for suite in suites if suite.name == MINIATURE_SUITE]
    for suite in suites if with_fidelity else ():
        counted = tuple(metric for metric in suite.metrics if METRICS[metric].evaluator == "complexity")
        if not suite.is_comparison and counted:
            measured = ", ".join(METRICS[metric].label for metric in counted)
            chosen.append(replace(suite, metrics=counted, title=f"{suite.title} (fidelity pass: {measured} only)"))
    return chosen


def chosen_suites(names: list[str] | None, budget: str | None, with_fidelity: bool = True) -> list[Suite]:
    """The suites a run-all runs (module docstring): the named ones; else with no budget (or the miniature
    protocol's) the default run (its fidelity pass only `with_fidelity`); else, under an explicit smoke / short /
    paper budget, the paper suites."""
    if names:
        return load_suites(names)
    if budget in (None, "miniature"):
        return default_run_suites(with_fidelity)
    return [suite for suite in load_suites() if not suite.is_comparison]


def resolve_defaults(suites: list[Suite], budget: str | None, data: list[str] | None) -> tuple[str, list[str]]:
    """The budget and data of a run: the command line's, else the suites' own defaults (comparison suites
    may state them; chosen suites that state different ones need the option), else smoke / synthetic."""
    if budget is None:
        stated = sorted({suite.budget for suite in suites if suite.budget})
        if len(stated) > 1:
            raise UserError(f"--budget: the chosen suites state different budgets ({', '.join(stated)}); pass --budget")
        budget = stated[0] if stated else "smoke"
    if not data:
        stated_data = sorted({suite.data for suite in suites if suite.data})
        if len(stated_data) > 1:
            raise UserError("--data: the chosen suites state different data; pass --data")
        data = list(stated_data[0]) if stated_data else ["synthetic"]
    return budget, data
