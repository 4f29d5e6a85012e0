"""Executing a planned `run-all`: training groups run here (under leases), in worker processes, or as Slurm jobs.

A training group is the entries that share one trained model (bench.planning: one training key). Each group is
trained once through its pipeline, from its last checkpoint if one exists, evaluated, and each finished entry is
stored in one transaction (bench.storing), so a killed run resumes where it stopped.

Several `run-all` on one store never train the same group twice: a group runs only under its training key's
lease in the store (bench.results). A group another live process holds is put off until the others are done,
then waited for; its entries that the other process stored are not run again. The same leases spread the groups
over worker processes on one machine (`run_in_workers`): each worker plans the request again and runs whatever
group it can lease. Slurm (`submit_groups`): one job per pending group, each running `run_job` for its group.

Under torchrun every rank runs the same plan: training is DistributedDataParallel, evaluation is sharded over the
ranks (bench.distributed), and only rank 0 opens the store and writes results.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from alignbench.bench import distributed
from alignbench.bench.errors import UserError
from alignbench.bench.planning import Entry, Plan, RunRequest, default_device, make_plan
from alignbench.bench.plugins import load_plugins
from alignbench.bench.results import ResultsStore
from alignbench.bench.storing import pending_entries, result_record

log = logging.getLogger(__name__)

LEASE_POLL_S = 3.0  # how often a process waiting for another one's group asks the store again


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

    def add(self, other: dict, siblings: bool = False) -> None:
        """Fold in what a cluster job or (`siblings`) a worker process of this run ran (its RunSummary as a dict). A
        worker finds the groups its siblings ran already stored: those are not another run-all's."""
        self.ran += other["ran"]
        self.failed.extend(other["failed"])
        if not siblings:
            self.by_others += other.get("by_others", 0)


def training_groups(entries: list[Entry]) -> dict[str, list[Entry]]:
    """Entries by training key, in plan order."""
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.training_key, []).append(entry)
    return groups


# --- here, under leases -----------------------------------------------------------------------------------


def run_group(group: list[Entry], store: ResultsStore | None, device: str, checkpoint_root: Path) -> None:
    """Train (or resume, or load) the group's model once through its pipeline, then evaluate and store each
    entry as soon as it is measured.

    Distributed: every rank trains (DDP) and evaluates (its shard); rank 0, the only one with a store,
    measures complexity and speed and writes the records.
    """
    pipeline = group[0].pipeline
    outcomes = pipeline.outcomes([entry.evaluation for entry in group], checkpoint_root, complexity_cache=store)
    for index, outcome in enumerate(outcomes):  # to the generator's end, where it deletes throwaway weights
        if store is not None:
            store.add(result_record(group[index], outcome, device))


def run_here(groups: list[list[Entry]], store: ResultsStore | None, device: str, checkpoint_root: Path, summary: RunSummary,
             progress: bool = False) -> None:
    """Run every group in this process (all ranks of it under torchrun), each under its lease; a group whose model
    diverges or breaks is listed as failed and the others go on."""
    bar = tqdm(total=sum(len(group) for group in groups), desc="run-all", unit="entry", disable=not progress)

    def run_one(group: list[Entry]) -> None:
        try:
            run_group(group, store, device, checkpoint_root)
            summary.ran += len(group)
        except (RuntimeError, ValueError) as error:  # a diverged or broken model must not stop the suite
            if distributed.is_distributed():
                raise  # the other ranks may be inside a collective: end the whole job (a re-run resumes)
            log.error("%s: %s", group[0].row.model, error)
            summary.failed.extend(f"{e.suite.name}/{e.row.row} (seed {e.seed}): {error}" for e in group)

    run_under_leases(groups, store, run_one, summary, bar.update)
    bar.close()


def run_under_leases(groups: list[list[Entry]], store: ResultsStore | None, run_one: Callable[[list[Entry]], None],
                     summary: RunSummary, advance: Callable[[int], object]) -> None:
    """Run each group through `run_one` while holding its training key's lease in the store.

    A group whose lease another live process holds is put off; once the others are done this process waits for
    it (asking every LEASE_POLL_S seconds), then runs only the entries the other process did not store: none when it
    finished them, all when it died or failed. `advance(n)` reports n entries settled (the progress bar).
    Under torchrun rank 0, the only one with the store, decides and the other ranks follow its broadcasts.
    """
    with _sigterm_as_exit():
        put_off = [group for group in groups if not _run_leased(group, store, run_one, summary, advance)]
        for group in put_off:
            summary.waited += len(group)
            log.warning("%s (%d entries): waiting for another process, which trains it", group[0].row.model, len(group))
            while not _run_leased(group, store, run_one, summary, advance):
                time.sleep(LEASE_POLL_S)


def _run_leased(group: list[Entry], store: ResultsStore | None, run_one: Callable[[list[Entry]], None],
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
            run_one([group[index] for index in missing])
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


def run_planned(request: RunRequest, results: Path, device: str | None, training_keys: Collection[str] | None = None) -> RunSummary:
    """What a worker process or a cluster job runs: plan `request` again (the same plan as the process that started
    it), then run here, under leases, its pending groups (only those of `training_keys` when given)."""
    device = distributed.rank_device(device or default_device())
    plan = make_plan(request, device)
    store = ResultsStore(results) if distributed.is_main() else None
    try:
        pending = [e for e in pending_entries(plan, store) if training_keys is None or e.training_key in training_keys]
        summary = RunSummary(len(plan.entries), len(plan.entries) - len(pending), 0, skipped=plan.skipped)
        run_here(list(training_groups(pending).values()), store, device, results.parent / "checkpoints", summary)
    finally:
        if store is not None:
            store.close()
    return summary


# --- worker processes on one machine ------------------------------------------------------------------------


def default_workers(device: str | None) -> int:
    """Worker processes for the default run on `device`: one per CPU core on a CPU (small models train faster as
    parallel one-thread processes than as one process over all threads, which small convolutions split badly),
    one on a GPU."""
    if (device or default_device()) != "cpu":
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_in_workers(workers: int, request: RunRequest, results: Path, device: str | None, summary: RunSummary,
                   progress: bool = False) -> None:
    """Run the plan in `workers` processes, each running every pending group it can lease (`run_planned`) with its
    own share of the CPU threads: the store's leases hand each group to exactly one of them, the others go on with
    other groups, so the work spreads without a scheduler. Their outcomes join `summary`."""
    threads = max(1, torch.get_num_threads() // workers)
    if progress:
        print(f"run-all: training and evaluating in {workers} worker processes, {threads} thread(s) each", file=sys.stderr)
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited torch thread pools or locks
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        jobs = [pool.submit(_worker, request, results, device, threads) for _ in range(workers)]
        for job in jobs:
            summary.add(job.result(), siblings=True)  # a worker's error (other than a model's, which it records) ends the run


def _worker(request: RunRequest, results: Path, device: str | None, threads: int) -> dict:
    """One worker process of `run_in_workers`: the user's plugins (ALIGNBENCH_PLUGINS, which the command line
    exports to child processes), `threads` CPU threads, then `run_planned`."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # the leases' "put off" / "waiting for another process" lines are about sibling workers here: not for the user
    logging.getLogger(__name__).setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    load_plugins(entry_points=True)
    return asdict(run_planned(request, results, device))


# --- Slurm ---------------------------------------------------------------------------------------------


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


def submit_groups(groups: dict[str, list[Entry]], summary: RunSummary, options: SlurmOptions, plan: Plan, results: Path,
                  device: str | None) -> None:
    """Submit one job per training group; with `options.wait`, wait and fold the jobs' outcomes into `summary` (a
    failed job's entries are listed as failed; a re-run resubmits only what is missing). The jobs plan the request
    again with the data sources resolved here (the same folders on every node)."""
    executor = _executor(options, results)
    if not groups:
        return
    prepare_shared_data(groups)
    request = plan.request
    suites = tuple(str(Path(name).resolve()) if name.endswith((".yaml", ".yml")) else name for name in request.suites or ()) or None
    job_request = RunRequest(suites, tuple(source.spec for source in plan.sources), plan.budget, request.seeds, request.overrides,
                             request.checkpoints, request.backbone_weights, request.eval_split)
    jobs = []
    with executor.batch():
        for key in groups:
            jobs.append(executor.submit(run_job, job_request, results, device, [key]))
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
        summary.add(outcome)


def _executor(options: SlurmOptions, results: Path):
    """A submitit executor for `options` (a UserError when submitit or, for Slurm, sbatch is missing)."""
    try:
        import submitit  # here: an optional dependency ('alignbench[slurm]')
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


def prepare_shared_data(groups: dict[str, list[Entry]]) -> None:
    """Export COCO files the detection tasks read (the synthetic scenes' export) before any job or worker starts,
    so that concurrent processes only read."""
    for source, task in {(e.source, e.suite.task) for group in groups.values() for e in group}:
        if task != "semantic":
            for split in ("train", "val"):
                with contextlib.suppress(UserError):  # a split a COCO copy lacks: the job that needs it says so
                    source.dataset.coco_files(source.root, split)


def run_job(request: RunRequest, results: Path, device: str | None, training_keys: list[str]) -> dict:
    """What one Slurm job runs: `run_planned` for its training group, over all its tasks (one process group).

    Entries already in the store are skipped, so a requeued or re-submitted job resumes.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if distributed.export_submitit_env():
        distributed.init_from_env(device)
    try:
        summary = run_planned(request, results, device, training_keys)
    finally:
        distributed.shutdown()
    return asdict(summary)
