"""`alignbench run-all`: every suite on the chosen data and budget, into the results store, then the report.

Entries (suite, row, seed) are planned first; those already complete in the store are skipped, so a
re-run after a crash or a SIGKILL resumes where it stopped. Entries that share a trained model (same
model, data, recipe, budget and seed: a "training key") are trained once, from their last checkpoint if
one exists, and evaluated together. Each finished entry is one transaction in the store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.errors import UserError
from bench.recipes import Budget, TrainConfig, budget as get_budget, training_config
from bench.results import ResultRecord, ResultsStore
from bench.suites import Suite, SuiteRow, load_suites
from bench.tasks import DataSource, resolve_data, task_runner

log = logging.getLogger(__name__)

EVALUATION_VERSION = 1  # bump when the evaluation of a finished model changes meaning


@dataclass(frozen=True)
class Entry:
    suite: Suite
    row: SuiteRow
    seed: int
    source: DataSource
    budget: Budget
    train: TrainConfig
    input_size: tuple[int, int]  # where params / GMACs / speed are measured
    eval_size: tuple[int, int] | None  # the row's stated input size, None: each image's own size

    @property
    def training_key(self) -> str:
        return _digest({"model": self.row.model, "data": self.source.description, "train": self.train.to_json(), "seed": self.seed})

    @property
    def config(self) -> dict:
        return {
            "model": self.row.model,
            "task": self.suite.task,
            "data": self.source.description,
            "budget": self.budget.name,
            "train": self.train.to_json(),
            "seed": self.seed,
            "metrics": list(self.suite.metrics),
            "input_size": list(self.input_size),
            "eval_size": list(self.eval_size) if self.eval_size else None,
            "evaluation": {"version": EVALUATION_VERSION, "max_images": self.budget.eval_max_images,
                           "max_side": self.budget.eval_max_side, "timing_iterations": self.budget.timing_iterations},
        }

    @property
    def config_hash(self) -> str:
        return _digest(self.config)


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def plan(suites: list[Suite], sources: list[DataSource], budget_name: str, seeds: list[int]) -> tuple[list[Entry], list[str]]:
    """All entries to run, and notes on suites no data source supports."""
    import models
    from reports.paper import paper_table

    budget = get_budget(budget_name)
    entries, skipped = [], []
    for suite in suites:
        source = next((s for s in sources if s.supports(suite.task)), None)
        if source is None:
            skipped.append(f"{suite.name}: no {suite.task} data among --data")
            continue
        rows = {row.key: row for row in paper_table(suite.paper, suite.table).rows}
        for row in suite.rows:
            stated = row.input_size or rows[row.row].input_size
            size = stated or models.get_info(row.model).input_size
            train = training_config(suite.recipe, budget.name, row.train)
            for seed in seeds:
                entries.append(Entry(suite, row, seed, source, budget, train, tuple(size), tuple(stated) if stated else None))
    return entries, skipped


@dataclass
class RunSummary:
    planned: int
    completed_before: int
    ran: int
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_all(
    suites: list[str] | None = None,
    data: list[str] | None = None,
    budget: str = "smoke",
    device: str | None = None,
    results: Path = Path("alignbench-output/results.sqlite"),
    seeds: list[int] | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    report: bool = True,
) -> RunSummary:
    """Plan, skip what is done, train and evaluate the rest, write the report."""
    from tqdm import tqdm

    started = time.perf_counter()
    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    results = Path(results)
    out_dir = Path(out_dir) if out_dir else results.parent
    store = ResultsStore(results)
    chosen = load_suites(suites)
    sources = resolve_data(data or ["synthetic"], progress=progress)
    entries, skipped = plan(chosen, sources, budget, seeds or [0])
    pending = [e for e in entries if not store.has(e.suite.name, e.row.row, e.seed, e.config_hash)]
    summary = RunSummary(len(entries), len(entries) - len(pending), 0, skipped=skipped)
    log.info("%d entries planned, %d already complete", len(entries), summary.completed_before)
    groups: dict[str, list[Entry]] = {}
    for entry in pending:
        groups.setdefault(entry.training_key, []).append(entry)
    bar = tqdm(total=len(pending), desc="run-all", unit="entry", disable=not progress)
    checkpoints = results.parent / "checkpoints"
    for key, group in groups.items():
        try:
            _run_group(group, store, device, checkpoints / key, progress)
            summary.ran += len(group)
        except (RuntimeError, ValueError) as error:  # a diverged or broken model must not stop the suite
            log.error("%s: %s", group[0].row.model, error)
            summary.failed.extend(f"{e.suite.name}/{e.row.row} (seed {e.seed}): {error}" for e in group)
        bar.update(len(group))
    bar.close()
    store.close()
    summary.seconds = time.perf_counter() - started
    if report:
        from bench.reporting import write_report

        write_report(results, out_dir / "report", budget=budget, suites=chosen)
    return summary


def _run_group(group: list[Entry], store: ResultsStore, device: str, checkpoint_dir: Path, progress: bool) -> None:
    """Train (or resume, or load) the group's model once, then evaluate and store each entry."""
    import models
    from bench.train import train

    first = group[0]
    started_at = _now()
    begin = time.perf_counter()
    torch.manual_seed(first.seed)
    runner = task_runner(first.suite.task, first.source)
    model = models.build(first.row.model, **runner.build_options(first.train))
    training_set, collate = runner.training_set(first.train, first.seed)
    train(model, training_set, collate, first.train, checkpoint_dir, device=device, progress=progress,
          description=f"{first.row.model} (seed {first.seed})")
    accuracy: dict[tuple | None, dict] = {}  # by evaluation size: rows sharing a model share its scores
    for entry in group:
        wanted_accuracy, wanted_complexity = entry.suite.metric_kinds()
        metrics: dict = {}
        if wanted_accuracy:
            if entry.eval_size not in accuracy:
                accuracy[entry.eval_size] = runner.evaluate(model, device, entry.budget, entry.eval_size, progress=progress)
            metrics.update(accuracy[entry.eval_size])
        if wanted_complexity:
            metrics.update(_complexity(store, entry, model, device, wanted_complexity))
        # duration: from the start of the group (training included) to the end of this entry
        store.add(_record(entry, metrics, started_at, time.perf_counter() - begin, device))
    if not first.budget.keep_weights:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


def _complexity(store: ResultsStore, entry: Entry, model, device: str, wanted: set[str]) -> dict:
    """Params and GMACs (cached per model and input size) and, if asked, speed on `device`."""
    from bench.profiling import complexity_at, measure_latency

    figures = store.complexity(entry.row.model, entry.input_size)
    if figures is None:
        counted = complexity_at(entry.row.model, entry.input_size)
        figures = {"params_m": counted.params_m, "gflops": counted.gmacs, "other_gops": counted.other_ops / 1e9}
        store.add_complexity(entry.row.model, entry.input_size, figures)
    metrics = {key: figures[key] for key in ("params_m", "gflops") if key in wanted}
    if wanted & {"fps", "latency_ms"}:
        iterations = entry.budget.timing_iterations
        latency = measure_latency(model, entry.input_size, device=device, warmup=max(1, iterations // 3), iterations=iterations)
        metrics.update({"fps": latency.fps, "latency_ms": latency.median_ms, "timing": latency.to_json()})
    return metrics


def _record(entry: Entry, metrics: dict, started_at: str, duration: float, device: str) -> ResultRecord:
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    return ResultRecord(
        suite=entry.suite.name, row=entry.row.row, seed=entry.seed, model=entry.row.model, task=entry.suite.task,
        budget=entry.budget.name, data=entry.source.description, config_hash=entry.config_hash, config=entry.config,
        metrics=metrics, started_at=started_at, finished_at=_now(), duration_s=duration, device=device,
        git_commit=git_commit(), torch=torch.__version__, cuda=torch.version.cuda, gpu=gpu,
    )


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """The commit of the source tree alignbench runs from, when it is a git checkout."""
    try:
        output = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if output.returncode != 0:
        return None
    return output.stdout.strip() or None
