"""What a `run-all` writes about its plan and its entries: the resolved configuration beside the results, which
planned entries the store already holds, and one ResultRecord per measured entry (with its provenance)."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import torch

from alignbench.bench import distributed, provenance
from alignbench.bench.io import write_json_atomic
from alignbench.bench.pipeline import Outcome
from alignbench.bench.planning import Entry, Plan
from alignbench.bench.plugins import ENVIRONMENT_VARIABLE
from alignbench.bench.recipes import budget as get_budget
from alignbench.bench.results import ResultRecord, ResultsStore


def pending_entries(plan: Plan, store: ResultsStore | None) -> list[Entry]:
    """The plan's entries the store does not hold yet (rank 0 reads the store, every rank gets its answer). An entry
    it holds is made the current one of its (suite, row, seed), even after a return to older code."""
    done = None
    if store is not None:
        done = [store.has(e.suite.name, e.row.row, e.seed, e.config_hash) for e in plan.entries]
        for entry, complete in zip(plan.entries, done):
            if complete:
                store.make_current(entry.suite.name, entry.row.row, entry.seed, entry.setup_hash, entry.config_hash)
    done = distributed.broadcast_from_main(done)
    return [entry for entry, complete in zip(plan.entries, done) if not complete]


def write_resolved_config(path: Path, plan: Plan) -> None:
    """What this run runs, after budget, overrides and suite defaults (atomically, beside the results): per suite
    its rows with their model, builder options, resolved recipe and seeds; the budget, data, evaluated split,
    overrides and loaded plugins."""
    suites: dict[str, dict] = {}
    for entry in plan.entries:
        suite = suites.setdefault(entry.suite.name, {"file": str(entry.suite.path), "task": entry.suite.task,
                                                     "recipe": entry.suite.recipe_for(entry.source.dataset.name),
                                                     "metrics": list(entry.suite.metrics), "baseline": entry.suite.baseline_row, "rows": {}})
        row = suite["rows"].setdefault(entry.row.row, {"model": entry.row.model, "options": entry.row.options, "train": entry.train.to_json(),
                                                       "seeds": [], "input_size": list(entry.input_size), "config_hashes": {}})
        row["seeds"].append(entry.seed)
        row["config_hashes"][str(entry.seed)] = entry.config_hash
    plugins = [spec for spec in os.environ.get(ENVIRONMENT_VARIABLE, "").split(os.pathsep) if spec.strip()]
    budget_used = plan.entries[0].budget if plan.entries else get_budget(plan.budget)
    request = plan.request
    write_json_atomic(path, {"budget": asdict(budget_used), "data": sorted({x.source.description for x in plan.entries}) or plan.data,
                             "eval_split": request.eval_split, "seeds": list(request.seeds) if request.seeds else None,
                             "overrides": request.overrides.to_json(), "plugins": plugins,
                             "suites": suites})


def result_record(entry: Entry, outcome: Outcome, device: str) -> ResultRecord:
    """The store's record of one measured entry, with its provenance (code, git commit, torch / CUDA / GPU, times)."""
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    return ResultRecord(
        suite=entry.suite.name, row=entry.row.row, seed=entry.seed, model=entry.row.model, task=entry.suite.task,
        budget=entry.budget.name, data=entry.data, config_hash=entry.config_hash, config=entry.config,
        metrics=outcome.metrics, started_at=outcome.started_at, finished_at=outcome.finished_at, duration_s=outcome.duration_s,
        device=device, git_commit=provenance.git_commit(), torch=torch.__version__, cuda=torch.version.cuda, gpu=gpu,
        setup_hash=entry.setup_hash, code_version=outcome.code["version"], model_fingerprint=outcome.code["model"],
        statistics=outcome.statistics,
    )
