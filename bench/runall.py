"""`alignbench run-all`: suites on the chosen data and budget, into the results store, then the report.

What runs (`chosen_suites`):
- no --suite and no --budget (or --budget miniature): the default run (`default_run_suites`), the miniature
  protocol (bench/suites/miniature_alignment_r18.yaml: FPN, FaPN and SFNet necks in one 64-channel ResNet-18
  Semantic-FPN scaffold, trained from scratch on the `synthetic-miniature` scenes, 3 seeds, mIoU and boundary
  bands with confidence intervals, params / GMACs and CPU latency; docs/miniature_protocol.md) plus a fidelity
  pass: every paper suite restricted to its params / GMACs columns, counted from the models' definitions with
  no training, no accuracy and no speed;
- --budget smoke|short|paper and no --suite: every paper suite with all its metrics (smoke: the pipeline
  check the tests use; it says nothing about accuracy);
- --suite S: those suites, with their own metrics.

Entries (suite, row, seed) are planned first; those already complete in the store are skipped, so a
re-run after a crash or a SIGKILL resumes where it stopped. An entry's config hash covers the experiment
(model, data, recipe, budget, seed, weights files: its setup hash) and the code (package version and model
definition fingerprint, bench.provenance): an entry stored by other code is run again, and the old row is
kept, marked superseded. Entries that share a trained model (same model, data, recipe, budget, seed,
weights and code: a "training key") are trained once through bench.pipeline, from their last checkpoint if
one exists, and evaluated together. Each finished entry is one transaction in the store.

Several `run-all` on one store never train the same group twice: a group runs only under its training key's
lease in the store (bench.results). A group another live process holds is put off until the others are done,
then waited for; its entries that the other process stored are not run again.

A row with a checkpoint (the suite row's `checkpoint:` or `--checkpoint`) is evaluated with those weights,
not trained; `--backbone-weights` starts training from ImageNet weights.

Under torchrun every rank runs the same plan: training is DistributedDataParallel, evaluation is sharded
over the ranks (bench.distributed), and only rank 0 opens the store and writes results and the report.
With `launcher="slurm"` each pending training group becomes a cluster job (submitit) that runs this same
function restricted to its group, writing to the same store; see `SlurmOptions`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from alignbench.bench import distributed, provenance
from alignbench.bench.errors import UserError
from alignbench.bench.pipeline import Evaluation, Outcome, Pipeline, random_init_warning
from alignbench.bench.recipes import NO_OVERRIDES, Budget, Overrides, TrainConfig, apply_overrides, training_config
from alignbench.bench.recipes import budget as get_budget
from alignbench.bench.results import ResultRecord, ResultsStore
from alignbench.bench.suites import Suite, SuiteRow, load_suites
from alignbench.bench.tasks import DataSource, resolve_data, task_runner
from alignbench.metrics.vocabulary import METRICS

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
    pipeline: Pipeline  # builds, trains and evaluates the row's model (shared by entries with one training key)
    overrides: Overrides = NO_OVERRIDES  # `--set` values (already applied to `train`, `budget` and `eval_size`)

    @property
    def training_key(self) -> str:
        return self.pipeline.training_key

    @property
    def setup(self) -> dict:
        """The experiment, without the code that runs it (weights files by sha256, only when given)."""
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


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def weights_for(row: SuiteRow, given: Mapping[str, Path | str] | None) -> Path | str | None:
    """The weights file of a row among `given` ({model name or "*": path}): its model's, else the one for all."""
    given = given or {}
    return given.get(row.model, given.get("*"))


def plan(
    suites: list[Suite], sources: list[DataSource], budget_name: str, seeds: list[int] | None, device: str = "cpu", progress: bool = False,
    checkpoints: Mapping[str, Path | str] | None = None, backbone_weights: Mapping[str, Path | str] | None = None,
    overrides: Overrides = NO_OVERRIDES,
) -> tuple[list[Entry], list[str]]:
    """All entries to run, and notes on suites no data source supports.

    `seeds` None: each suite's own seeds (a comparison suite's `seeds`), else seed 0.

    `checkpoints` / `backbone_weights` map a model name (or "*", every row) to a weights file; a suite
    row's own `checkpoint:` comes first.
    """
    from alignbench import models

    budget = replace(get_budget(budget_name), **overrides.budget)
    entries, skipped = [], []
    runners: dict[tuple, object] = {}  # one task runner per (task, data): its val split is read once
    pipelines: dict[tuple, Pipeline] = {}
    for suite in suites:
        source = next((s for s in sources if s.supports(suite.task)), None)
        if source is None:
            skipped.append(f"{suite.name}: no {suite.task} data among --data")
            continue
        runner = runners.setdefault((suite.task, source), task_runner(suite.task, source))
        rows = {row.key: row for row in suite.reference_table().rows}
        for row in suite.rows:
            stated = overrides.evaluation.get("eval_size") or row.input_size or rows[row.row].input_size
            info = models.get_info(row.model)
            size = stated or info.input_size
            flops_size = stated or info.flops_input_size or info.input_size  # e.g. SFNet's GFLOPs at 1024 x 1024
            train, _ = apply_overrides(training_config(suite.recipe, budget.name, row.train), budget, overrides)
            checkpoint = row.checkpoint or weights_for(row, checkpoints)
            backbone = weights_for(row, backbone_weights)
            options = json.dumps(row.options, sort_keys=True, default=str)  # builder keywords: part of the model's identity
            for seed in seeds if seeds is not None else (suite.seeds or [0]):
                identity = (row.model, options, suite.task, source, train, seed, str(checkpoint), str(backbone))
                if identity not in pipelines:
                    pipelines[identity] = Pipeline(
                        row.model, source, train, budget, seed, options=row.options, checkpoint=checkpoint, backbone_weights=backbone,
                        train_model=checkpoint is None, device=device, progress=progress, runner=runner,
                    )
                entries.append(Entry(suite, row, seed, source, budget, train, tuple(size), tuple(stated) if stated else None,
                                     tuple(flops_size), pipelines[identity], overrides))
    for pipeline in pipelines.values():
        # every rank, in one order: the build options may export shared data under distributed.main_first (a
        # collective), so they must not be first needed inside rank 0's store checks
        pipeline.code  # noqa: B018
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
    waited: int = 0  # entries whose training key another process held when this one came to them
    by_others: int = 0  # entries found stored by another process once this one held their lease


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
    budget: str | None = None,
    device: str | None = None,
    results: Path = Path("alignbench-output/results.sqlite"),
    seeds: list[int] | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    report: bool = True,
    launcher: str = "local",
    slurm: SlurmOptions | None = None,
    training_keys: Collection[str] | None = None,
    checkpoints: Mapping[str, Path | str] | None = None,
    backbone_weights: Mapping[str, Path | str] | None = None,
    overrides: Overrides = NO_OVERRIDES,
    workers: int = 1,
) -> RunSummary:
    """Plan, skip what is done, train and evaluate the rest (here, or in Slurm jobs), write the report.

    `training_keys` restricts the run to those training groups (what one Slurm job runs). `checkpoints` and
    `backbone_weights` map a model name, or "*" for every row, to a weights file (see `plan`). `workers` > 1
    (local launcher, one process): the groups run in that many worker processes (`_run_in_workers`).
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
    if launcher == "local":
        device = distributed.rank_device(device)
    main = distributed.is_main()
    progress = progress and main
    results = Path(results).resolve()
    out_dir = Path(out_dir) if out_dir else results.parent
    chosen = chosen_suites(suites, budget)  # first: a bad suite file stops the run before the store is created
    store = ResultsStore(results) if main else None  # only rank 0 touches the store
    budget, data = resolve_defaults(chosen, budget, data)
    with distributed.main_first():  # rank 0 generates the synthetic data, the others then find it
        sources = resolve_data(data, progress=progress)
    entries, skipped = plan(chosen, sources, budget, seeds, device=device, progress=progress,
                            checkpoints=checkpoints, backbone_weights=backbone_weights, overrides=overrides)
    done = None
    if main:
        write_resolved_config(results.parent / "resolved_config.json", entries, budget, data, seeds, overrides)
        done = [store.has(e.suite.name, e.row.row, e.seed, e.config_hash) for e in entries]
        for entry, complete in zip(entries, done):  # a result of this code is the current one (even after a return to older code)
            if complete:
                store.make_current(entry.suite.name, entry.row.row, entry.seed, entry.setup_hash, entry.config_hash)
    done = distributed.broadcast_from_main(done)
    pending = [e for e, complete in zip(entries, done) if not complete]
    summary = RunSummary(len(entries), len(entries) - len(pending), 0, skipped=skipped)
    log.info("%d entries planned, %d already complete", len(entries), summary.completed_before)
    if training_keys is not None:
        pending = [e for e in pending if e.training_key in training_keys]
    groups: dict[str, list[Entry]] = {}
    for entry in pending:
        groups.setdefault(entry.training_key, []).append(entry)
    if main:
        random_init_warning(sum(g[0].pipeline.trains([e.evaluation for e in g]) and g[0].pipeline.random_init for g in groups.values()), budget)
    if launcher == "local":
        from alignbench.bench.train import per_rank_batch

        for entry in pending:  # before anything trains: every total batch must split over the ranks
            per_rank_batch(entry.train.batch_size, distributed.world_size())
    if launcher == "slurm":
        store.close()
        _submit_groups(groups, summary, slurm or SlurmOptions(), results, sources,
                       suites=suites, budget=budget, device=requested_device, seeds=seeds, overrides=overrides,
                       checkpoints=_as_strings(checkpoints), backbone_weights=_as_strings(backbone_weights))
        if not (slurm or SlurmOptions()).wait:
            report = False
    elif workers > 1 and len(groups) > 1 and not distributed.is_distributed():
        store.close()
        _prepare_shared_data(groups, sources)
        _run_in_workers(min(workers, len(groups)), summary, dict(
            suites=suites, data=data, budget=budget, device=requested_device, results=results, seeds=seeds,
            overrides=overrides, training_keys=training_keys, checkpoints=_as_strings(checkpoints),
            backbone_weights=_as_strings(backbone_weights)), progress)
    else:
        bar = tqdm(total=len(pending), desc="run-all", unit="entry", disable=not progress)
        checkpoint_root = results.parent / "checkpoints"

        def run_group(group: list[Entry]) -> None:
            try:
                _run_group(group, store, device, checkpoint_root)
                summary.ran += len(group)
            except (RuntimeError, ValueError) as error:  # a diverged or broken model must not stop the suite
                if distributed.is_distributed():
                    raise  # the other ranks may be inside a collective: end the whole job (a re-run resumes)
                log.error("%s: %s", group[0].row.model, error)
                summary.failed.extend(f"{e.suite.name}/{e.row.row} (seed {e.seed}): {error}" for e in group)

        _run_under_leases(list(groups.values()), store, run_group, summary, bar.update)
        bar.close()
        if store is not None:
            store.close()
    summary.seconds = time.perf_counter() - started
    if report and main:
        from alignbench.bench.reporting import write_report

        write_report(results, out_dir / "report", budget=budget, suites=chosen)
    return summary


def write_resolved_config(path: Path, entries: list[Entry], budget: str, data: list[str], seeds: list[int] | None,
                          overrides: Overrides) -> None:
    """What this run runs, after budget, overrides and suite defaults (atomically, beside the results): per suite
    its rows with their model, builder options, resolved recipe and seeds; the budget, data, overrides and loaded plugins."""
    import os

    from alignbench.bench.io import write_json_atomic
    from alignbench.bench.plugins import ENVIRONMENT_VARIABLE

    suites: dict[str, dict] = {}
    for entry in entries:
        suite = suites.setdefault(entry.suite.name, {"file": str(entry.suite.path), "task": entry.suite.task, "recipe": entry.suite.recipe,
                                                     "metrics": list(entry.suite.metrics), "baseline": entry.suite.baseline_row, "rows": {}})
        row = suite["rows"].setdefault(entry.row.row, {"model": entry.row.model, "options": entry.row.options, "train": entry.train.to_json(),
                                                       "seeds": [], "input_size": list(entry.input_size), "config_hashes": {}})
        row["seeds"].append(entry.seed)
        row["config_hashes"][str(entry.seed)] = entry.config_hash
    plugins = [spec for spec in os.environ.get(ENVIRONMENT_VARIABLE, "").split(os.pathsep) if spec.strip()]
    budget_used = entries[0].budget if entries else get_budget(budget)
    write_json_atomic(path, {"budget": asdict(budget_used), "data": sorted({x.source.description for x in entries}) or data,
                             "seeds": seeds, "overrides": overrides.to_json(), "plugins": plugins, "suites": suites})


MINIATURE_SUITE = "miniature_alignment_r18"  # the default run's comparison (docs/miniature_protocol.md)


def default_run_suites() -> list[Suite]:
    """The default run (`alignbench run-all` without --suite or --budget): the miniature protocol's suite with all
    its metrics, then every paper suite restricted to its params / GMACs columns (the vocabulary's "complexity"
    evaluator) and titled so; paper suites without such columns are left out. Those rows measure nothing that
    needs training (bench.pipeline.needs_trained_model), so only the miniature suite trains."""
    suites = load_suites()
    chosen = [suite for suite in suites if suite.name == MINIATURE_SUITE]
    for suite in suites:
        counted = tuple(metric for metric in suite.metrics if METRICS[metric].evaluator == "complexity")
        if not suite.is_comparison and counted:
            measured = ", ".join(METRICS[metric].label for metric in counted)
            chosen.append(replace(suite, metrics=counted, title=f"{suite.title} (fidelity pass: {measured} only)"))
    return chosen


def chosen_suites(names: list[str] | None, budget: str | None) -> list[Suite]:
    """The suites a run-all runs (module docstring): the named ones; else with no budget (or the miniature
    protocol's) the default run; else, under an explicit smoke / short / paper budget, the paper suites."""
    if names:
        return load_suites(names)
    if budget in (None, "miniature"):
        return default_run_suites()
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


def _as_strings(weights: Mapping[str, Path | str] | None) -> dict[str, str] | None:
    return None if weights is None else {key: str(Path(path).resolve()) for key, path in weights.items()}


def _run_group(group: list[Entry], store: ResultsStore | None, device: str, checkpoint_root: Path) -> None:
    """Train (or resume, or load) the group's model once through its pipeline, then evaluate and store each
    entry as soon as it is measured.

    Distributed: every rank trains (DDP) and evaluates (its shard); rank 0, the only one with a store,
    measures complexity and speed and writes the records.
    """
    pipeline = group[0].pipeline
    outcomes = pipeline.outcomes([entry.evaluation for entry in group], checkpoint_root, complexity_cache=store)
    for index, outcome in enumerate(outcomes):  # to the generator's end, where it deletes throwaway weights
        if store is not None:
            store.add(_record(group[index], outcome, device))


# --- leases: several run-all on one store -----------------------------------------------------------------

LEASE_POLL_S = 3.0  # how often a process waiting for another one's group asks the store again


def _run_under_leases(groups: list[list[Entry]], store: ResultsStore | None, run_group: Callable[[list[Entry]], None],
                      summary: RunSummary, advance: Callable[[int], object]) -> None:
    """Run each group through `run_group` while holding its training key's lease in the store.

    A group whose lease another live process holds is put off; once the others are done this process waits for
    it (asking every LEASE_POLL_S seconds), then runs only the entries the other process did not store: none when it
    finished them, all when it died or failed. `advance(n)` reports n entries settled (the progress bar).
    Under torchrun rank 0, the only one with the store, decides and the other ranks follow its broadcasts.
    """
    with _sigterm_as_exit():
        put_off = [group for group in groups if not _run_leased(group, store, run_group, summary, advance)]
        for group in put_off:
            summary.waited += len(group)
            log.warning("%s (%d entries): waiting for another process, which trains it", group[0].row.model, len(group))
            while not _run_leased(group, store, run_group, summary, advance):
                time.sleep(LEASE_POLL_S)


def _run_leased(group: list[Entry], store: ResultsStore | None, run_group: Callable[[list[Entry]], None],
                summary: RunSummary, advance: Callable[[int], object]) -> bool:
    """Take the group's lease and run its entries not yet stored; False (nothing run) while another process holds it."""
    key = group[0].training_key
    holder = distributed.broadcast_from_main(store.take_lease(key) if store is not None else None)
    if holder is not None:
        log.info("%s: leased by %s, put off", group[0].row.model, holder)
        return False
    with store.holding_lease(key) if store is not None else contextlib.nullcontext():
        missing = None  # the entries not stored yet (rank 0 reads the store, the other ranks are told)
        if store is not None:
            missing = [index for index, e in enumerate(group) if not store.has(e.suite.name, e.row.row, e.seed, e.config_hash)]
        missing = distributed.broadcast_from_main(missing)
        summary.by_others += len(group) - len(missing)
        if missing:
            run_group([group[index] for index in missing])
    advance(len(group))
    return True


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """While groups run, SIGTERM ends this process through SystemExit (status 143), so that `finally` blocks release
    the leases; a SIGTERM handler someone else installed (e.g. submitit's) is left as it is."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def exit_on_sigterm(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# --- worker processes on one machine ------------------------------------------------------------------------


def default_workers(device: str | None) -> int:
    """Worker processes for the default run on `device`: one per CPU core on a CPU (small models train faster as
    parallel one-thread processes than as one process over all threads, which small convolutions split badly),
    one on a GPU."""
    import os

    if (device or default_device()) != "cpu":
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _run_in_workers(workers: int, summary: RunSummary, arguments: dict, progress: bool = False) -> None:
    """Run the plan in `workers` processes, each `run_all` over every pending group with its own share of the
    CPU threads: the store's leases (`_run_under_leases`) hand each group to exactly one of them, the others
    go on with other groups, so the work spreads without a scheduler. Their outcomes join `summary`."""
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, torch.get_num_threads() // workers)
    if progress:
        print(f"run-all: training and evaluating in {workers} worker processes, {threads} thread(s) each", file=sys.stderr)
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited torch thread pools or locks
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        jobs = [pool.submit(_worker, arguments, threads) for _ in range(workers)]
        for job in jobs:
            outcome = job.result()  # a worker's error (other than a model's, which it records) ends the run
            summary.ran += outcome["ran"]
            summary.failed.extend(outcome["failed"])


def _worker(arguments: dict, threads: int) -> dict:
    """One worker process of `_run_in_workers`: the user's plugins (ALIGNBENCH_PLUGINS, which the command line
    exports to child processes), `threads` CPU threads, then `run_all`."""
    from alignbench.bench.plugins import load_plugins

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # the leases' "put off" / "waiting for another process" lines are about sibling workers here: not for the user
    logging.getLogger(__name__).setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    load_plugins(entry_points=True)
    return asdict(run_all(**arguments, progress=False, report=False, launcher="local", workers=1))


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
    data = [s.spec for s in sources]
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
        summary.by_others += outcome.get("by_others", 0)
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


def _record(entry: Entry, outcome: Outcome, device: str) -> ResultRecord:
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    return ResultRecord(
        suite=entry.suite.name, row=entry.row.row, seed=entry.seed, model=entry.row.model, task=entry.suite.task,
        budget=entry.budget.name, data=entry.source.description, config_hash=entry.config_hash, config=entry.config,
        metrics=outcome.metrics, started_at=outcome.started_at, finished_at=outcome.finished_at, duration_s=outcome.duration_s,
        device=device, git_commit=provenance.git_commit(), torch=torch.__version__, cuda=torch.version.cuda, gpu=gpu,
        setup_hash=entry.setup_hash, code_version=outcome.code["version"], model_fingerprint=outcome.code["model"],
        statistics=outcome.statistics,
    )
