"""`alignbench run-all`: every suite on the chosen data and budget, into the results store, then the report.

Entries (suite, row, seed) are planned first; those already complete in the store are skipped, so a
re-run after a crash or a SIGKILL resumes where it stopped. Entries that share a trained model (same
model, data, recipe, budget and seed: a "training key") are trained once, from their last checkpoint if
one exists, and evaluated together. Each finished entry is one transaction in the store.

Under torchrun every rank runs the same plan: training is DistributedDataParallel, evaluation is sharded
over the ranks (bench.distributed), and only rank 0 opens the store and writes results and the report.
With `launcher="slurm"` each pending training group becomes a cluster job (submitit) that runs this same
function restricted to its group, writing to the same store; see `SlurmOptions`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import subprocess
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from alignbench.bench import distributed
from alignbench.bench.errors import UserError
from alignbench.bench.recipes import Budget, TrainConfig, training_config
from alignbench.bench.recipes import budget as get_budget
from alignbench.bench.results import ResultRecord, ResultsStore
from alignbench.bench.suites import Suite, SuiteRow, load_suites
from alignbench.bench.tasks import DataSource, resolve_data, task_runner

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
    input_size: tuple[int, int]  # where speed is measured (the row's or the model's paper input size)
    eval_size: tuple[int, int] | None  # the row's stated input size, None: each image's own size
    flops_size: tuple[int, int]  # where GMACs are counted: the row's size, else the size the paper counts at

    @property
    def training_key(self) -> str:
        return _digest({"model": self.row.model, "data": self.source.description, "train": self.train.to_json(), "seed": self.seed,
                        "detector_options": self.budget.detector_options})

    @property
    def config(self) -> dict:
        return {
            "model": self.row.model,
            "task": self.suite.task,
            "data": self.source.description,
            "budget": self.budget.name,
            "train": self.train.to_json(),
            "detector_options": self.budget.detector_options,
            "seed": self.seed,
            "metrics": list(self.suite.metrics),
            "input_size": list(self.input_size),
            "flops_size": list(self.flops_size),
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
    from alignbench import models
    from alignbench.reports.paper import paper_table

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
            info = models.get_info(row.model)
            size = stated or info.input_size
            flops_size = stated or info.flops_input_size or info.input_size  # e.g. SFNet's GFLOPs at 1024 x 1024
            train = training_config(suite.recipe, budget.name, row.train)
            for seed in seeds:
                entries.append(Entry(suite, row, seed, source, budget, train, tuple(size), tuple(stated) if stated else None,
                                     tuple(flops_size)))
    return entries, skipped


@dataclass
class RunSummary:
    planned: int
    completed_before: int
    ran: int
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    jobs: list[str] = field(default_factory=list)  # cluster job ids (launcher "slurm")


@dataclass(frozen=True)
class SlurmOptions:
    """How `run_all(launcher="slurm")` submits its jobs: one job per pending training group.

    Each job runs `tasks_per_node` processes on each of `nodes` nodes (default: one per GPU, or one), which
    join one torch.distributed group (DDP training, sharded evaluation). `executor="local"` runs the jobs
    as local processes through submitit's LocalExecutor (for tests, or a machine without Slurm).
    """

    partition: str | None = None
    gpus_per_node: int = 1
    nodes: int = 1
    tasks_per_node: int | None = None  # None: one per GPU (one without GPUs)
    cpus_per_task: int | None = None
    time_min: int = 24 * 60
    extra: dict = field(default_factory=dict)  # more sbatch options, e.g. {"account": "abc", "qos": "high"}
    folder: Path | None = None  # job scripts and logs (default: <results folder>/slurm)
    executor: str = "slurm"  # slurm | local
    wait: bool = True  # wait for the jobs, then write the report

    @property
    def tasks(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)


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
    launcher: str = "local",
    slurm: SlurmOptions | None = None,
    training_keys: Collection[str] | None = None,
) -> RunSummary:
    """Plan, skip what is done, train and evaluate the rest (here, or in Slurm jobs), write the report.

    `training_keys` restricts the run to those training groups (what one Slurm job runs).
    """
    from tqdm import tqdm

    if launcher not in ("local", "slurm"):
        raise UserError(f"--launcher must be local or slurm, got {launcher!r}")
    if launcher == "slurm" and distributed.is_distributed():
        raise UserError("--launcher slurm: submit from one process, not under torchrun")
    started = time.perf_counter()
    requested_device = device  # a job decides its default device on its own node
    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available() and launcher == "local":
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    main = distributed.is_main()
    progress = progress and main
    results = Path(results).resolve()
    out_dir = Path(out_dir) if out_dir else results.parent
    store = ResultsStore(results) if main else None  # only rank 0 touches the store
    chosen = load_suites(suites)
    with distributed.main_first():  # rank 0 generates the synthetic data, the others then find it
        sources = resolve_data(data or ["synthetic"], progress=progress)
    entries, skipped = plan(chosen, sources, budget, seeds or [0])
    done = [store.has(e.suite.name, e.row.row, e.seed, e.config_hash) for e in entries] if main else None
    done = distributed.broadcast_from_main(done)
    pending = [e for e, complete in zip(entries, done) if not complete]
    summary = RunSummary(len(entries), len(entries) - len(pending), 0, skipped=skipped)
    log.info("%d entries planned, %d already complete", len(entries), summary.completed_before)
    if training_keys is not None:
        pending = [e for e in pending if e.training_key in training_keys]
    if launcher == "local":
        from alignbench.bench.train import per_rank_batch

        for entry in pending:  # before anything trains: every total batch must split over the ranks
            per_rank_batch(entry.train.batch_size, distributed.world_size())
    groups: dict[str, list[Entry]] = {}
    for entry in pending:
        groups.setdefault(entry.training_key, []).append(entry)
    if launcher == "slurm":
        store.close()
        _submit_groups(groups, summary, slurm or SlurmOptions(), results, sources,
                       suites=suites, budget=budget, device=requested_device, seeds=seeds or [0])
        if not (slurm or SlurmOptions()).wait:
            report = False
    else:
        device = distributed.rank_device(device)
        bar = tqdm(total=len(pending), desc="run-all", unit="entry", disable=not progress)
        checkpoints = results.parent / "checkpoints"
        for key, group in groups.items():
            try:
                _run_group(group, store, device, checkpoints / key, progress)
                summary.ran += len(group)
            except (RuntimeError, ValueError) as error:  # a diverged or broken model must not stop the suite
                if distributed.is_distributed():
                    raise  # the other ranks may be inside a collective: end the whole job (a re-run resumes)
                log.error("%s: %s", group[0].row.model, error)
                summary.failed.extend(f"{e.suite.name}/{e.row.row} (seed {e.seed}): {error}" for e in group)
            bar.update(len(group))
        bar.close()
        if store is not None:
            store.close()
    summary.seconds = time.perf_counter() - started
    if report and main:
        from alignbench.bench.reporting import write_report

        write_report(results, out_dir / "report", budget=budget, suites=chosen)
    return summary


def _run_group(group: list[Entry], store: ResultsStore | None, device: str, checkpoint_dir: Path, progress: bool) -> None:
    """Train (or resume, or load) the group's model once, then evaluate and store each entry.

    Distributed: every rank trains (DDP) and evaluates (its shard); rank 0, the only one with a store,
    measures complexity and speed and writes the records.
    """
    from alignbench import models
    from alignbench.bench.train import train

    first = group[0]
    started_at = _now()
    begin = time.perf_counter()
    torch.manual_seed(first.seed)
    runner = task_runner(first.suite.task, first.source)
    with distributed.main_first():  # rank 0 exports shared files (the COCO export of synthetic data) first
        model = models.build(first.row.model, **runner.build_options(first.train, first.budget))
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
        if store is None:
            continue
        if wanted_complexity:
            metrics.update(_complexity(store, entry, model, device, wanted_complexity))
        # duration: from the start of the group (training included) to the end of this entry
        store.add(_record(entry, metrics, started_at, time.perf_counter() - begin, device))
    if not first.budget.keep_weights and distributed.is_main():
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


# --- Slurm ---------------------------------------------------------------------------------------------


def _submit_groups(
    groups: dict[str, list[Entry]], summary: RunSummary, options: SlurmOptions, results: Path,
    sources: list[DataSource], **arguments,
) -> None:
    """Submit one job per training group; with `options.wait`, wait and fold the jobs' outcomes into
    `summary` (a failed job's entries are listed as failed; a re-run resubmits only what is missing)."""
    executor = _executor(options, results)
    if not groups:
        return
    _prepare_shared_data(groups, sources)
    data = ["synthetic" if s.kind == "synthetic" else f"{s.kind}={s.root}" for s in sources]
    suites = [str(Path(name).resolve()) if name.endswith((".yaml", ".yml")) else name for name in arguments.pop("suites") or []]
    jobs = []
    with executor.batch():
        for key in groups:
            job_arguments = dict(arguments, suites=suites or None, data=data, results=results, training_keys=[key])
            jobs.append(executor.submit(run_cluster_job, job_arguments))
    summary.jobs = [job.job_id for job in jobs]
    log.info("submitted %d job(s): %s", len(jobs), ", ".join(summary.jobs))
    if not options.wait:
        return
    for job, group in zip(jobs, groups.values()):
        try:
            outcome = job.results()[0]  # task 0 (rank 0) of the job; results() waits for every task
        except Exception as error:  # submitit raises its own types for failed, cancelled or timed-out jobs
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            summary.failed.extend(f"{e.suite.name}/{e.row.row} (seed {e.seed}): job {job.job_id} failed: {reason}" for e in group)
            continue
        summary.ran += outcome["ran"]
        summary.failed.extend(outcome["failed"])


def _executor(options: SlurmOptions, results: Path):
    """A submitit executor for `options` (a UserError when submitit or, for Slurm, sbatch is missing)."""
    try:
        import submitit
    except ImportError:
        raise UserError("--launcher slurm needs submitit: pip install 'alignbench[slurm]'") from None
    if options.executor not in ("slurm", "local"):
        raise UserError(f"--slurm-executor must be slurm or local, got {options.executor!r}")
    if options.executor == "slurm" and shutil.which("sbatch") is None:
        raise UserError("--launcher slurm: sbatch not found on PATH (submit from a Slurm login node)")
    if options.executor == "local" and options.nodes != 1:
        raise UserError(f"--nodes {options.nodes}: the local executor runs on one node")
    folder = Path(options.folder) if options.folder else results.parent / "slurm"
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=options.executor)
    parameters = {
        "name": "alignbench", "timeout_min": options.time_min, "nodes": options.nodes,
        "tasks_per_node": options.tasks, "gpus_per_node": options.gpus_per_node,
    }
    if options.cpus_per_task:
        parameters["cpus_per_task"] = options.cpus_per_task
    if options.partition:
        parameters["slurm_partition"] = options.partition
    if options.extra:
        parameters["slurm_additional_parameters"] = dict(options.extra)
    executor.update_parameters(**parameters)
    return executor


def _prepare_shared_data(groups: dict[str, list[Entry]], sources: list[DataSource]) -> None:
    """Export the synthetic scenes' COCO files before any job starts, so that concurrent jobs only read."""
    from alignbench.bench.tasks import coco_split

    for source, task in {(e.source, e.suite.task) for group in groups.values() for e in group}:
        if source.kind == "synthetic" and task != "semantic":
            for split in ("train", "val"):
                coco_split(source, split)


def run_cluster_job(arguments: dict) -> dict:
    """What one Slurm job runs: `run_all` for its training group, over all its tasks (one process group).

    Entries already in the store are skipped, so a requeued or re-submitted job resumes.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if distributed.export_submitit_env():
        distributed.init_from_env(arguments.get("device"))
    try:
        summary = run_all(**arguments, progress=False, report=False, launcher="local")
    finally:
        distributed.shutdown()
    return asdict(summary)


def _complexity(store: ResultsStore, entry: Entry, model, device: str, wanted: set[str]) -> dict:
    """Params and GMACs (cached per model and input size) and, if asked, speed on `device`."""
    from alignbench.bench.profiling import complexity_at, measure_latency, parameter_count

    figures = store.complexity(entry.row.model, entry.flops_size)
    if figures is None and "gflops" not in wanted:
        # Parameters alone need no trace (a FLOP trace of a large model at the paper's size takes minutes on a CPU).
        figures = {"params_m": parameter_count(entry.row.model) / 1e6}
    elif figures is None:
        counted = complexity_at(entry.row.model, entry.flops_size)
        figures = {"params_m": counted.params_m, "gflops": counted.gmacs, "other_gops": counted.other_ops / 1e9}
        store.add_complexity(entry.row.model, entry.flops_size, figures)
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
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


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
