"""Suites: declarative YAML files (bench/suites/*.yaml): paper tables to mirror, and comparison suites.

A paper suite mirrors one table of a paper:

    suite: fapn_table1            # the file's stem
    paper: FaPN                   # reports/paper/<paper>.yaml holds the reference numbers
    table: Table 1
    task: semantic                # semantic | detection | instance | panoptic
    recipe: fapn_semantic         # bench.recipes.RECIPES
    metrics: [params_m, mIoU]     # columns to measure (keys of alignbench.metrics.vocabulary)
    compare: {reference: fapn_r50}            # "(reference - row)" in parentheses, FaPN Table 1 style
    # or compare: {baseline: fcn}             # "(row - baseline)", the gain columns of SFNet / FPT
    # or compare: {pairs: [[fpn_r50, fapn_r50], ...]}  # an improvement line under each pair
    rows:
      - {row: fpn_r50, model: pointrend_fpn_r50}
      - {row: fapn_r50, model: pointrend_fapn_r50, train: {iterations: 90000}, input_size: [1024, 2048]}
      - {row: fapn_r101, model: pointrend_fapn_r101, checkpoint: weights/fapn_r101.pth}  # evaluated, not trained
      - {row: small, model: semantic_fpn_fpn_r18, options: {neck_channels: 64, head_channels: 64}}  # builder keywords

A comparison suite has no paper and no table: arbitrary rows (any registered or composed model, e.g. a
plugin's `semantic_fpn_myneck_r18`), a baseline row, and defaults for seeds, budget and data that the
command line overrides (bench/suites/compare_alignment_r18.yaml is the template):

    suite: compare_alignment_r18
    title: FPN vs FaPN vs SFNet alignment (Semantic FPN, ResNet-18)
    task: semantic
    recipe: fapn_semantic
    metrics: [mIoU, band_3, band_5, band_8, band_12]
    baseline: fpn                 # each row's difference to this row, with confidence intervals
    seeds: [0, 1, 2]
    budget: smoke                 # optional
    data: [synthetic]             # optional
    per_data:                     # optional: what depends on the dataset run on (by its catalog name)
      camvid: {recipe: miniature_camvid, input_size: [192, 256]}
    rows:
      - {row: fpn, model: semantic_fpn_fpn_r18}
      - {model: semantic_fpn_fapn_r18}          # row defaults to the model name

Each row names a registered model; the data come from `run-all --data` (else the suite's `data`), the budget
from `--budget` (else the suite's). `per_data` gives, per dataset of the catalog (bench.data.catalog), the
recipe and the evaluation input size to use on it instead of the suite's (a row's own `input_size` and `train`
still come first): the miniature protocol trains on the synthetic scenes and on CamVid with recipes of their
own. A row's `checkpoint` (a path, relative to the suite file's folder) holds trained weights: the row is
evaluated with them instead of trained. A row's `options` are keywords of its model's builder
(`alignbench.models.build(model, **options)`, e.g. the channel widths of the miniature protocol's 64-channel
necks); they are part of the row's model identity, training key and config hash, and params / GMACs are
counted with them. Fields and types are checked with pydantic before anything runs, and a row's options by
building its model on the meta device (no memory, no weights); every error names the file, the line and the
field, and exits with status 2.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from alignbench import models
from alignbench.bench import tasks
from alignbench.bench.config_files import LocatedYaml, StrictSchema
from alignbench.bench.errors import UserError
from alignbench.bench.recipes import _POSITIVE, BUDGETS, RECIPES, TrainConfig
from alignbench.metrics.vocabulary import METRICS, TASKS, of_evaluators, task_metrics
from alignbench.reports.paper import PaperColumn, PaperRow, PaperTable, paper_table

COMPARE_KINDS = ("reference", "baseline", "pairs")


@dataclass(frozen=True)
class SuiteRow:
    row: str  # key of the paper's row (a comparison suite: the row's name)
    model: str
    train: dict = field(default_factory=dict)  # recipe overrides
    input_size: tuple[int, int] | None = None  # for params / GMACs / speed (default: the model's)
    note: str = ""
    checkpoint: Path | None = None  # trained weights to evaluate instead of training
    options: dict = field(default_factory=dict)  # builder keywords of the row's model (models.build)


@dataclass(frozen=True)
class DataSettings:
    """What a suite does differently on one dataset (`per_data`): its recipe, its evaluation input size."""

    recipe: str | None = None
    input_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    paper: str | None  # None: a comparison suite
    table: str | None
    title: str
    task: str
    recipe: str
    metrics: tuple[str, ...]
    rows: tuple[SuiteRow, ...]
    compare: dict
    path: Path
    note: str = ""
    seeds: tuple[int, ...] | None = None  # defaults of a comparison suite (the command line overrides them)
    budget: str | None = None
    data: tuple[str, ...] | None = None
    per_data: dict[str, DataSettings] = field(default_factory=dict)  # dataset name -> its recipe and input size

    def recipe_for(self, dataset: str) -> str:
        """The recipe on `dataset` (a catalog name): its `per_data` recipe, else the suite's."""
        settings = self.per_data.get(dataset)
        return settings.recipe if settings is not None and settings.recipe else self.recipe

    def input_size_for(self, dataset: str) -> tuple[int, int] | None:
        """The evaluation input size on `dataset` stated by `per_data`, None when none is stated."""
        settings = self.per_data.get(dataset)
        return settings.input_size if settings is not None else None

    @property
    def is_comparison(self) -> bool:
        """A comparison suite: rows of the user's choosing, no paper numbers."""
        return self.paper is None

    @property
    def baseline_row(self) -> str | None:
        """The row every other row is compared with (a paper suite's reference or baseline row)."""
        return self.compare.get("baseline") or self.compare.get("reference")

    def metric_kinds(self) -> tuple[set[str], set[str]]:
        """(accuracy metrics, complexity and speed metrics) this suite measures."""
        measured = of_evaluators(self.metrics, "complexity", "speed")
        return set(self.metrics) - measured, measured

    def reference_table(self):
        """The table the report mirrors: the paper's, or for a comparison suite one without paper values
        (method: the model's registry row, e.g. "FaPN / Semantic FPN R18")."""
        if not self.is_comparison:
            return paper_table(self.paper, self.table)

        rows = []
        for row in self.rows:
            info = models.get_info(row.model)
            rows.append(PaperRow(key=row.row, method=info.row or row.model, backbone=None, input_size=row.input_size,
                                 ours=False, text="", values={}))

        def header(metric: str) -> str:  # the unit of counts and times: "params (M)", "latency (ms)"
            entry = METRICS[metric]
            return f"{entry.label} ({entry.unit})" if entry.unit in ("M", "ms") else entry.label

        columns = tuple(PaperColumn(key=metric, header=header(metric)) for metric in self.metrics)
        return PaperTable(paper="", id=self.name, caption=self.title, dataset="", columns=columns, rows=tuple(rows),
                          source=str(self.path))


class _RowSchema(StrictSchema):
    row: str | None = None  # required in paper suites (checked after the schema)
    model: str
    train: dict[str, Any] | None = None
    input_size: list[int] | None = Field(default=None, min_length=2, max_length=2)
    checkpoint: str | None = None
    options: dict[str, Any] | None = None
    note: str = ""


class _DataSettingsSchema(StrictSchema):
    recipe: str | None = None
    input_size: list[int] | None = Field(default=None, min_length=2, max_length=2)


class _SuiteSchema(StrictSchema):
    suite: str
    paper: str | None = None
    table: str | None = None
    title: str | None = None
    task: str
    recipe: str
    metrics: list[str] = Field(min_length=1)
    compare: dict[str, Any] | None = None
    baseline: str | None = None
    seeds: list[int] | None = Field(default=None, min_length=1)
    budget: str | None = None
    data: list[str] | None = Field(default=None, min_length=1)
    per_data: dict[str, _DataSettingsSchema] | None = None
    rows: list[_RowSchema] = Field(min_length=1)
    note: str = ""


_PAPER_ONLY = ("paper", "table", "compare")
_COMPARISON_ONLY = ("baseline", "seeds", "budget", "data")


def _train_overrides(doc: LocatedYaml, where: tuple, train: dict) -> dict:
    """A row's recipe overrides, typed like TrainConfig's fields (strict: no strings for numbers)."""
    types = typing.get_type_hints(TrainConfig)
    checked = {}
    for key, value in train.items():
        if key not in types:
            raise doc.error(where + (key,), f"unknown training option (known: {', '.join(sorted(types))})")
        candidate = tuple(value) if isinstance(value, list) else value  # YAML has lists where TrainConfig has tuples
        try:
            checked[key] = TypeAdapter(types[key], config=ConfigDict(strict=True)).validate_python(candidate)
        except ValidationError as error:
            raise doc.error(where + (key,), f"{error.errors()[0]['msg']} (got {value!r})") from None
        values = checked[key] if isinstance(checked[key], tuple) else (checked[key],)
        if key in _POSITIVE and any(isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0 for v in values):
            raise doc.error(where + (key,), f"must be positive (got {value!r})")
    return checked


# keywords a row's `options` may not set: the weights have their own fields, the class count comes from the data
_NOT_ROW_OPTIONS = {"checkpoint": "the row's `checkpoint:` or --checkpoint", "backbone_weights": "--backbone-weights",
                    "num_classes": "the data"}


def _builder_options(doc: LocatedYaml, where: tuple, row_key: str, model: str, options: dict) -> dict:
    """A row's builder keywords, checked against its model's builder: the names against its signature, the
    values by building the model on the meta device (no memory, no weights), so that nothing trains first."""
    accepted = models.builder_options(model)
    for key in options:
        if key in _NOT_ROW_OPTIONS:
            raise doc.error(where + (key,), f"row {row_key!r}: not a row option (set by {_NOT_ROW_OPTIONS[key]})")
        if key not in accepted:
            known = ", ".join(sorted(accepted - set(_NOT_ROW_OPTIONS)))
            raise doc.error(where + (key,), f"row {row_key!r}: unknown option of model {model!r} (known: {known})")
    if options:
        try:
            with torch.device("meta"):
                models.build(model, **options)
        except (TypeError, ValueError, AssertionError, RuntimeError) as error:  # the builder's own check of a value
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise doc.error(where, f"row {row_key!r}: model {model!r} cannot be built with {options} ({message})") from None
    return dict(options)


def load_suite(path: str | Path) -> Suite:
    """Parse and validate one suite file against the schema, the registry, the recipes and the paper numbers."""
    path = Path(path)
    doc = LocatedYaml.read(path, "suite")
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error((), "expected a mapping of suite fields")
    known = {(): tuple(_SuiteSchema.model_fields), ("rows",): tuple(_RowSchema.model_fields),
             ("per_data",): tuple(_DataSettingsSchema.model_fields)}
    try:
        spec = _SuiteSchema.model_validate(data)
    except ValidationError as error:
        raise doc.schema_error(error, known) from None
    comparison = spec.paper is None
    if comparison:
        for key in _PAPER_ONLY:
            if key in data:
                raise doc.error((key,), "a paper suite field: a comparison suite (no `paper`) has `baseline` instead")
        if spec.table is not None:
            raise doc.error(("table",), "a comparison suite has no paper table (give `title`, or add `paper`)")
    else:
        for key in _COMPARISON_ONLY:
            if key in data:
                raise doc.error((key,), f"a comparison suite field: paper suites take {key} from the command line")
        if spec.table is None:
            raise doc.error((), "missing field 'table'")
    if spec.suite != path.stem:
        raise doc.error(("suite",), f"must equal the file name {path.stem!r}")
    task = spec.task
    if task not in TASKS:
        raise doc.error(("task",), f"unknown task {task!r} (known: {', '.join(TASKS)})")
    if spec.recipe not in RECIPES:
        raise doc.error(("recipe",), f"unknown recipe {spec.recipe!r} (known: {', '.join(RECIPES)})")
    per_data = {}
    for dataset, settings in (spec.per_data or {}).items():
        if settings.recipe is not None and settings.recipe not in RECIPES:
            raise doc.error(("per_data", dataset, "recipe"), f"unknown recipe {settings.recipe!r} (known: {', '.join(RECIPES)})")
        if settings.input_size is not None and min(settings.input_size) <= 0:
            raise doc.error(("per_data", dataset, "input_size"), "expected [H, W] with positive integers")
        per_data[dataset] = DataSettings(settings.recipe, tuple(settings.input_size) if settings.input_size else None)
    paper_rows: set[str] | None = None
    if not comparison:
        try:
            paper_rows = {row.key for row in paper_table(spec.paper, spec.table).rows}
        except ValueError as error:
            raise doc.error(("table",), str(error)) from None
    allowed = set(task_metrics(task))
    for index, metric in enumerate(spec.metrics):
        if metric not in allowed:
            raise doc.error(("metrics", index), f"{metric!r} is not a {task} metric (known: {', '.join(sorted(allowed))})")
    if spec.budget is not None and spec.budget not in BUDGETS:
        raise doc.error(("budget",), f"unknown budget {spec.budget!r} (known: {', '.join(BUDGETS)})")
    for index, seed in enumerate(spec.seeds or []):
        if seed < 0:
            raise doc.error(("seeds", index), f"seeds must be non-negative (got {seed})")
    rows = []
    seen: set[str] = set()
    for index, row in enumerate(spec.rows):
        where = ("rows", index)
        if row.row is None and not comparison:
            raise doc.error(where, "missing field 'row'")
        key = row.row if row.row is not None else row.model
        if paper_rows is not None and key not in paper_rows:
            raise doc.error(where + ("row",), f"{key!r} is not a row of {spec.paper} {spec.table}")
        if key in seen:
            raise doc.error(where + ("row",), f"row {key!r} appears twice")
        seen.add(key)
        try:
            info = models.get_info(row.model)
        except ValueError as error:
            raise doc.error(where + ("model",), str(error)) from None
        if info.task != task:
            raise doc.error(where + ("model",), f"{row.model!r} is a {info.task} model, the suite's task is {task}")
        train = _train_overrides(doc, where + ("train",), row.train or {})
        if row.input_size is not None and any(v <= 0 for v in row.input_size):
            raise doc.error(where + ("input_size",), "expected [H, W] with positive integers")
        checkpoint = None
        if row.checkpoint is not None:
            if not row.checkpoint.strip():
                raise doc.error(where + ("checkpoint",), "expected the path of a weights file")
            checkpoint = (path.parent / Path(row.checkpoint).expanduser()).resolve()  # relative: to the suite file's folder
            if not checkpoint.is_file():
                raise doc.error(where + ("checkpoint",), f"{checkpoint}: file not found")
        options = _builder_options(doc, where + ("options",), key, row.model, row.options or {})
        rows.append(SuiteRow(key, row.model, train, tuple(row.input_size) if row.input_size else None, row.note, checkpoint, options))
    if comparison:
        if spec.baseline is None:
            raise doc.error((), "missing field 'baseline' (the row the others are compared with)")
        if spec.baseline not in seen:
            raise doc.error(("baseline",), f"{spec.baseline!r} is not one of the suite's rows ({', '.join(seen)})")
        compare: dict = {"baseline": spec.baseline}
    else:
        compare = spec.compare or {}
        if set(compare) - set(COMPARE_KINDS) or len(compare) > 1:
            raise doc.error(("compare",), "expected one of {reference: ROW}, {baseline: ROW} or {pairs: [[BASE, OURS], ...]}")
        for kind in ("reference", "baseline"):
            if kind in compare and compare[kind] not in seen:
                raise doc.error(("compare", kind), f"{compare[kind]!r} is not one of the suite's rows")
        pairs = compare.get("pairs", [])
        if not isinstance(pairs, list):
            raise doc.error(("compare", "pairs"), "expected a list of [BASE_ROW, OURS_ROW]")
        for index, pair in enumerate(pairs):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(k, str) and k in seen for k in pair)):
                raise doc.error(("compare", "pairs", index), "expected [BASE_ROW, OURS_ROW] naming the suite's rows")
    title = spec.title or (spec.suite if comparison else f"{spec.paper} {spec.table}")
    return Suite(
        name=spec.suite, paper=spec.paper, table=spec.table, title=title, task=task, recipe=spec.recipe,
        metrics=tuple(spec.metrics), rows=tuple(rows), compare=compare, path=path, note=spec.note,
        seeds=tuple(spec.seeds) if spec.seeds else None, budget=spec.budget, data=tuple(spec.data) if spec.data else None,
        per_data=per_data,
    )


def suite_dir() -> Path:
    """The built-in suites shipped with the package."""
    return Path(str(resources.files("alignbench.bench") / "suites"))


def load_suites(names: list[str] | None = None, directory: Path | None = None) -> list[Suite]:
    """All suites of a folder (default: the built-in ones) in file-name order, or those named; a name
    ending in .yaml is a path to a suite file of the user's own."""
    directory = directory or suite_dir()
    files = sorted(directory.glob("*.yaml"))
    available = {path.stem: path for path in files}
    if names:
        chosen = []
        for name in names:
            if name.endswith((".yaml", ".yml")):
                chosen.append(Path(name))
            elif name in available:
                chosen.append(available[name])
            else:
                raise UserError(f"--suite: unknown suite {name!r}; known: {', '.join(available)} (or a path to a .yaml file)")
        files = chosen
    return [load_suite(path) for path in files]


def default_recipe(model: str) -> str:
    """The recipe of the first built-in paper suite that runs `model` (its paper's schedule), else its task
    runner's (FaPN's schedule of the task, bench.tasks)."""
    for suite in load_suites():
        if not suite.is_comparison and any(row.model == model for row in suite.rows):
            return suite.recipe
    try:
        return tasks.default_recipe(models.get_info(model).task)
    except ValueError as error:
        raise UserError(str(error)) from None
