"""`alignbench run-all`: plan the request (bench.planning), skip what the store holds, execute the rest here, in
worker processes or as Slurm jobs (bench.execution), store each entry (bench.storing), write the report.

Under torchrun every rank runs the same plan and only rank 0 opens the store and writes the report. A row with a
checkpoint (the suite row's `checkpoint:` or `--checkpoint`) is evaluated with those weights, not trained;
`--backbone-weights` starts training from ImageNet weights.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from alignbench.bench import distributed
from alignbench.bench.errors import UserError
from alignbench.bench.execution import (
    RunSummary,
    SlurmOptions,
    prepare_shared_data,
    run_here,
    run_in_workers,
    submit_groups,
    training_groups,
)
from alignbench.bench.pipeline import random_init_warning
from alignbench.bench.planning import RunRequest, default_device, make_plan
from alignbench.bench.results import ResultsStore
from alignbench.bench.storing import pending_entries, write_resolved_config
from alignbench.bench.train import per_rank_batch

log = logging.getLogger(__name__)


def run_all(
    request: RunRequest | None = None,
    results: Path = Path("alignbench-output/results.sqlite"),
    *,
    device: str | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    report: bool = True,
    launcher: str = "local",
    slurm: SlurmOptions | None = None,
    workers: int = 1,
) -> RunSummary:
    """Plan `request`, skip what is done, train and evaluate the rest, write the report (into `out_dir`/report,
    default beside `results`).

    `launcher` "local": here (all ranks under torchrun), or with `workers` > 1 in that many worker processes
    (bench.execution.run_in_workers); "slurm": one job per pending training group (`slurm` options). `request` None:
    the default run (`RunRequest()`).
    """
    request = request or RunRequest()
    if launcher not in ("local", "slurm"):
        raise UserError(f"--launcher must be local or slurm, got {launcher!r}")
    if launcher == "slurm" and distributed.is_distributed():
        raise UserError("--launcher slurm: submit from one process, not under torchrun")
    started = time.perf_counter()
    requested_device = device  # a job or a worker decides its default device on its own
    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available() and launcher == "local":
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    if launcher == "local":
        device = distributed.rank_device(device)
    main = distributed.is_main()
    progress = progress and main
    results = Path(results).resolve()
    out_dir = Path(out_dir) if out_dir else results.parent
    plan = make_plan(request, device, progress)  # a bad suite or data stops the run before the store is created
    store = ResultsStore(results) if main else None  # only rank 0 touches the store
    if main:
        write_resolved_config(results.parent / "resolved_config.json", plan)
    pending = pending_entries(plan, store)
    summary = RunSummary(len(plan.entries), len(plan.entries) - len(pending), 0, skipped=plan.skipped)
    log.info("%d entries planned, %d already complete", len(plan.entries), summary.completed_before)
    groups = training_groups(pending)
    if main:
        random_init_warning(sum(g[0].pipeline.trains([e.evaluation for e in g]) and g[0].pipeline.random_init for g in groups.values()),
                            plan.budget)
    if launcher == "local":
        for entry in pending:  # before anything trains: every total batch must split over the ranks
            per_rank_batch(entry.train.batch_size, distributed.world_size())
    if launcher == "slurm":
        store.close()
        options = slurm or SlurmOptions()
        submit_groups(groups, summary, options, plan, results, requested_device)
        report = report and options.wait
    elif workers > 1 and len(groups) > 1 and not distributed.is_distributed():
        store.close()
        prepare_shared_data(groups)
        run_in_workers(min(workers, len(groups)), plan.request, results, requested_device, summary, progress)
    else:
        run_here(list(groups.values()), store, device, results.parent / "checkpoints", summary, progress)
        if store is not None:
            store.close()
    summary.seconds = time.perf_counter() - started
    if report and main:
        from alignbench.bench.reporting import write_report  # here: matplotlib and the report load only to write one

        write_report(results, out_dir / "report", budget=plan.budget, suites=plan.suites)
    return summary
