"""Suites: declarative YAML files (bench/suites/*.yaml), one per paper table to mirror.

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

Each row names a registered model and a row of the paper's table; the data come from `run-all --data`,
the budget from `--budget`. A row's `checkpoint` (a path, relative to the suite file's folder) holds trained
weights: the row is evaluated with them instead of trained. Errors name the file, the line and the field,
and exit with status 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from alignbench.bench.errors import UserError
from alignbench.metrics.vocabulary import TASKS, of_evaluators, task_metrics

_SUITE_FIELDS = {"suite", "paper", "table", "title", "task", "recipe", "metrics", "compare", "rows", "note"}
_ROW_FIELDS = {"row", "model", "train", "input_size", "checkpoint", "note"}


@dataclass(frozen=True)
class SuiteRow:
    row: str  # key of the paper's row
    model: str
    train: dict = field(default_factory=dict)  # recipe overrides
    input_size: tuple[int, int] | None = None  # for params / GMACs / speed (default: the model's)
    note: str = ""
    checkpoint: Path | None = None  # trained weights to evaluate instead of training


@dataclass(frozen=True)
class Suite:
    name: str
    paper: str
    table: str
    title: str
    task: str
    recipe: str
    metrics: tuple[str, ...]
    rows: tuple[SuiteRow, ...]
    compare: dict
    path: Path
    note: str = ""

    def metric_kinds(self) -> tuple[set[str], set[str]]:
        """(accuracy metrics, complexity and speed metrics) this suite measures."""
        measured = of_evaluators(self.metrics, "complexity", "speed")
        return set(self.metrics) - measured, measured


class _Located:
    """YAML data with the line of every mapping key and sequence item, for error messages."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        try:
            node = yaml.compose(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise UserError(f"{path}{line}: invalid YAML ({getattr(error, 'problem', error)})") from None
        if node is None:
            raise UserError(f"{path}: empty suite file")
        self.lines: dict[tuple, int] = {}
        self._index(node, ())
        self.data = yaml.safe_load(text)

    def _index(self, node, where: tuple) -> None:
        self.lines.setdefault(where, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                self.lines[where + (key_node.value,)] = key_node.start_mark.line + 1
                self._index(value_node, where + (key_node.value,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._index(item, where + (index,))

    def error(self, where: tuple, message: str) -> UserError:
        line = self.lines.get(where) or self.lines.get(where[:-1]) or 1
        name = ".".join(str(part) for part in where) or "(file)"
        return UserError(f"{self.path}:{line}: {name}: {message}")


def load_suite(path: str | Path) -> Suite:
    """Parse and validate one suite file against the registry, the recipes and the paper numbers."""
    from alignbench import models
    from alignbench.bench.recipes import RECIPES
    from alignbench.reports.paper import paper_table

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from None
    doc = _Located(path, text)
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error((), "expected a mapping of suite fields")
    for key in data:
        if key not in _SUITE_FIELDS:
            raise doc.error((key,), f"unknown field (known: {', '.join(sorted(_SUITE_FIELDS))})")
    for key in ("suite", "paper", "table", "task", "recipe", "metrics", "rows"):
        if key not in data:
            raise doc.error((), f"missing field {key!r}")
    if data["suite"] != path.stem:
        raise doc.error(("suite",), f"must equal the file name {path.stem!r}")
    task = data["task"]
    if task not in TASKS:
        raise doc.error(("task",), f"unknown task {task!r} (known: {', '.join(TASKS)})")
    if data["recipe"] not in RECIPES:
        raise doc.error(("recipe",), f"unknown recipe {data['recipe']!r} (known: {', '.join(RECIPES)})")
    try:
        table = paper_table(data["paper"], data["table"])
    except ValueError as error:
        raise doc.error(("table",), str(error)) from None
    paper_rows = {row.key for row in table.rows}
    metrics = data["metrics"]
    if not isinstance(metrics, list) or not metrics:
        raise doc.error(("metrics",), "expected a non-empty list")
    allowed = set(task_metrics(task))
    for index, metric in enumerate(metrics):
        if metric not in allowed:
            raise doc.error(("metrics", index), f"{metric!r} is not a {task} metric (known: {', '.join(sorted(allowed))})")
    rows = []
    if not isinstance(data["rows"], list) or not data["rows"]:
        raise doc.error(("rows",), "expected a non-empty list of rows")
    seen = set()
    for index, row in enumerate(data["rows"]):
        where = ("rows", index)
        if not isinstance(row, dict):
            raise doc.error(where, "expected a mapping with 'row' and 'model'")
        for key in row:
            if key not in _ROW_FIELDS:
                raise doc.error(where + (key,), f"unknown field (known: {', '.join(sorted(_ROW_FIELDS))})")
        for key in ("row", "model"):
            if key not in row:
                raise doc.error(where, f"missing field {key!r}")
        if row["row"] not in paper_rows:
            raise doc.error(where + ("row",), f"{row['row']!r} is not a row of {data['paper']} {data['table']}")
        if row["row"] in seen:
            raise doc.error(where + ("row",), f"row {row['row']!r} appears twice")
        seen.add(row["row"])
        try:
            info = models.get_info(row["model"])
        except ValueError as error:
            raise doc.error(where + ("model",), str(error)) from None
        if info.task != task:
            raise doc.error(where + ("model",), f"{row['model']!r} is a {info.task} model, the suite's task is {task}")
        train = row.get("train") or {}
        if not isinstance(train, dict):
            raise doc.error(where + ("train",), "expected a mapping of recipe options")
        from alignbench.bench.recipes import TrainConfig

        for key in train:
            if key not in TrainConfig.__dataclass_fields__:
                raise doc.error(where + ("train", key), "unknown training option")
        size = row.get("input_size")
        if size is not None and not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise doc.error(where + ("input_size",), "expected [H, W] with positive integers")
        checkpoint = row.get("checkpoint")
        if checkpoint is not None:
            if not isinstance(checkpoint, str) or not checkpoint.strip():
                raise doc.error(where + ("checkpoint",), "expected the path of a weights file")
            checkpoint = (path.parent / Path(checkpoint).expanduser()).resolve()  # relative: to the suite file's folder
            if not checkpoint.is_file():
                raise doc.error(where + ("checkpoint",), f"{checkpoint}: file not found")
        rows.append(SuiteRow(row["row"], row["model"], dict(train), tuple(size) if size else None, row.get("note", ""), checkpoint))
    compare = data.get("compare") or {}
    if not isinstance(compare, dict) or set(compare) - {"reference", "baseline", "pairs"} or len(compare) > 1:
        raise doc.error(("compare",), "expected one of {reference: ROW}, {baseline: ROW} or {pairs: [[BASE, OURS], ...]}")
    for kind in ("reference", "baseline"):
        if kind in compare and compare[kind] not in seen:
            raise doc.error(("compare", kind), f"{compare[kind]!r} is not one of the suite's rows")
    for index, pair in enumerate(compare.get("pairs", [])):
        if not (isinstance(pair, list) and len(pair) == 2 and all(key in seen for key in pair)):
            raise doc.error(("compare", "pairs", index), "expected [BASE_ROW, OURS_ROW] naming the suite's rows")
    return Suite(
        name=data["suite"], paper=data["paper"], table=data["table"], title=data.get("title", f"{data['paper']} {data['table']}"),
        task=task, recipe=data["recipe"], metrics=tuple(metrics), rows=tuple(rows), compare=compare, path=path,
        note=data.get("note", ""),
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
    """The recipe of the first built-in suite that runs `model` (its paper's schedule)."""
    for suite in load_suites():
        if any(row.model == model for row in suite.rows):
            return suite.recipe
    raise UserError(f"no suite uses {model!r}, so it has no default recipe: pass --recipe")
