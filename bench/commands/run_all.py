"""`alignbench run-all`: suites trained, evaluated and profiled into the results store, then the report.

Without --suite and --budget it runs the miniature protocol and the params / GMACs fidelity pass of the paper
tables; `--budget smoke|short|paper` runs every paper table instead (bench/runall.py says what runs when).

Under torchrun (`torchrun --nproc-per-node N -m alignbench run-all ...`) the ranks train with DDP and share the
evaluation; `--launcher slurm` submits the pending work as Slurm jobs instead (submitit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alignbench.bench.commands.common import budget_name, device_name, non_negative_int, output_folder, positive_int, seed_list, store_file
from alignbench.bench.errors import UserError

# the options that only mean something with --launcher slurm, and their "not given" values
_SLURM_ONLY = {"partition": None, "gpus_per_node": None, "nodes": None, "tasks_per_node": None,
               "cpus_per_task": None, "time": None, "slurm_extra": None, "slurm_folder": None,
               "slurm_executor": None, "no_wait": False}


def slurm_time(text: str) -> int:
    """A job time limit -> whole minutes: '90' (minutes), 'H:MM:SS' or 'D-HH:MM:SS'."""
    days, _, clock = text.strip().rpartition("-")
    try:
        parts = [int(part) for part in clock.split(":")]
        day_count = int(days) if days else 0
    except ValueError:
        parts, day_count = [], 0
    if not days and len(parts) == 1:
        minutes = parts[0]
    elif len(parts) == 3:
        hours, mins, seconds = parts
        minutes = day_count * 24 * 60 + hours * 60 + mins + (1 if seconds else 0)
    else:
        raise argparse.ArgumentTypeError(f"expected minutes, H:MM:SS or D-HH:MM:SS, got {text!r}")
    if minutes < 1 or day_count < 0 or min(parts) < 0:
        raise argparse.ArgumentTypeError(f"time limit must be positive, got {text!r}")
    return minutes


def key_value(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as account=abc, got {text!r}")
    return key.strip(), value


def register(subparsers) -> None:
    run_all = subparsers.add_parser(
        "run-all",
        help="the main job: by default the miniature protocol and the paper tables' params / GMACs; write the report",
        description="Without --suite and --budget: the miniature protocol (FPN, FaPN and SFNet necks in one ResNet-18 "
        "scaffold, trained from scratch on small synthetic scenes, 3 seeds, compared with 95% confidence intervals; "
        "docs/miniature_protocol.md) plus a fidelity pass over every paper table's params / GMACs columns, counted "
        "without training. With --budget smoke|short|paper and no --suite: every paper table with all its metrics "
        "(smoke: the pipeline check the tests use, its accuracy is no result). With --suite: those suites. "
        "Entries already complete in the results store are skipped: a re-run resumes. "
        "Under torchrun the processes train with DDP and share the evaluation; --launcher slurm submits "
        "one Slurm job per pending training group instead.",
    )
    run_all.add_argument("--suite", action="append", help="run only this suite (repeatable; see bench/suites/ and `alignbench suites`)")
    run_all.add_argument("--data", action="append",
                         help="'synthetic', 'synthetic-miniature' (the default run's), NAME=PATH for a dataset of `alignbench datasets` "
                         "(e.g. camvid=PATH, cityscapes=PATH, ade20k=PATH, coco=PATH) or a dataset file FILE.yaml[=ROOT] (repeatable; "
                         "default: the suites' stated data, else synthetic)")
    run_all.add_argument("--eval-split", default="val", metavar="SPLIT",
                         help="the split evaluated (default val; e.g. test for a copy with test labels)")
    run_all.add_argument("--budget", type=budget_name,
                         help="miniature (the default run: the laptop protocol, docs/miniature_protocol.md); smoke (CPU minutes, "
                              "the pipeline check: every paper table, accuracy not a result), short (GPU minutes) or paper "
                              "(these three run every paper table with all its metrics)")
    run_all.add_argument("--device", type=device_name, help="cpu, cuda or cuda:N (default: cuda when available)")
    run_all.add_argument("--results", type=store_file, default="alignbench-output/results.sqlite",
                         help="results database (default alignbench-output/results.sqlite)")
    run_all.add_argument("--seeds", type=seed_list, help="comma-separated seeds (default: a comparison suite's seeds, else 0)")
    run_all.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                         help="override a recipe or budget field for every row, e.g. iterations=20, batch=4, lr=0.02, "
                         "crop=64x128, eval_size=128x256, eval_images=8 (repeatable; recorded in the config hash)")
    run_all.add_argument("--out", type=output_folder, help="report folder parent (default: beside the results database)")
    run_all.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    run_all.add_argument("--checkpoint", action="append", metavar="[MODEL=]PATH",
                         help="trained weights to evaluate instead of training: for MODEL's rows, or for every row (repeatable)")
    run_all.add_argument("--backbone-weights", action="append", metavar="[MODEL=]PATH",
                         help="ImageNet-pretrained backbone weights to train from: for MODEL's rows, or for every row (repeatable)")
    run_all.add_argument("--workers", type=positive_int,
                         help="processes that train and evaluate pending models side by side on this machine, sharing its CPU "
                         "threads (default: one per CPU core for the default run on a CPU, else 1)")
    run_all.add_argument("--launcher", choices=("local", "slurm"), default="local",
                         help="local: run here (default; under torchrun: all its processes); slurm: submit jobs (needs submitit)")
    slurm = run_all.add_argument_group("Slurm (--launcher slurm)")
    slurm.add_argument("--partition", help="Slurm partition")
    slurm.add_argument("--gpus-per-node", type=non_negative_int, help="GPUs per node and job (default 1)")
    slurm.add_argument("--nodes", type=positive_int, help="nodes per job (default 1)")
    slurm.add_argument("--tasks-per-node", type=positive_int, help="processes per node (default: one per GPU)")
    slurm.add_argument("--cpus-per-task", type=positive_int, help="CPU cores per process")
    slurm.add_argument("--time", type=slurm_time, help="time limit per job: minutes, H:MM:SS or D-HH:MM:SS (default 1-00:00:00)")
    slurm.add_argument("--slurm-extra", type=key_value, action="append", metavar="KEY=VALUE",
                       help="another sbatch option, e.g. account=abc or qos=high (repeatable)")
    slurm.add_argument("--slurm-folder", help="job scripts and logs (default: <results folder>/slurm)")
    slurm.add_argument("--slurm-executor", choices=("slurm", "local"),
                       help="'local' runs the jobs as local processes with submitit's LocalExecutor (testing)")
    slurm.add_argument("--no-wait", action="store_true", help="submit and return; re-run run-all later to see progress")
    run_all.set_defaults(handler=run)


def slurm_options(args):
    """The SlurmOptions of the command line (refusing Slurm options without --launcher slurm)."""
    from alignbench.bench.execution import SlurmOptions

    given = [name for name, unset in _SLURM_ONLY.items() if getattr(args, name) != unset]
    if args.launcher != "slurm":
        if given:
            raise UserError(f"--{given[0].replace('_', '-')}: only with --launcher slurm")
        return None
    return SlurmOptions(
        partition=args.partition,
        gpus_per_node=1 if args.gpus_per_node is None else args.gpus_per_node,
        nodes=args.nodes or 1,
        tasks_per_node=args.tasks_per_node,
        cpus_per_task=args.cpus_per_task,
        time_min=args.time or 24 * 60,
        extra=dict(args.slurm_extra or []),
        folder=Path(args.slurm_folder).resolve() if args.slurm_folder else None,
        executor=args.slurm_executor or "slurm",
        wait=not args.no_wait,
    )


def weights_map(values: list[str] | None, option: str) -> dict[str, str] | None:
    """'[MODEL=]PATH' values -> {model or "*": path}; MODEL must be a registered model."""
    from alignbench import models

    if not values:
        return None
    mapping: dict[str, str] = {}
    for value in values:
        model, separator, path = value.partition("=")
        if not separator:
            model, path = "*", value
        else:
            try:
                models.get_info(model)
            except ValueError as error:
                raise UserError(f"{option} {value}: {error}") from None
        if model in mapping:
            raise UserError(f"{option}: two files for {'every row' if model == '*' else model}")
        mapping[model] = str(Path(path).expanduser().resolve())  # absolute: worker processes and cluster jobs read it too
    return mapping


def run(args) -> int:
    from alignbench.bench import distributed
    from alignbench.bench.execution import default_workers
    from alignbench.bench.planning import RunRequest
    from alignbench.bench.recipes import parse_overrides
    from alignbench.bench.runall import run_all

    slurm = slurm_options(args)
    request = RunRequest(
        suites=tuple(name for value in args.suite or [] for name in value.split(",") if name) or None,
        data=tuple(args.data) if args.data else None,
        budget=args.budget,
        seeds=tuple(args.seeds) if args.seeds else None,
        overrides=parse_overrides(args.overrides),
        checkpoints=weights_map(args.checkpoint, "--checkpoint"),
        backbone_weights=weights_map(args.backbone_weights, "--backbone-weights"),
        eval_split=args.eval_split,
    )
    distributed.init_from_env(args.device)  # a no-op unless started by torchrun with several processes
    summary = run_all(
        request,
        Path(args.results),
        device=args.device,
        out_dir=Path(args.out) if args.out else None,
        progress=sys.stderr.isatty(),
        report=not args.no_report,
        launcher=args.launcher,
        slurm=slurm,
        workers=args.workers or (default_workers(args.device) if not args.suite and args.budget is None else 1),
    )
    main = distributed.is_main()
    distributed.barrier()  # the other ranks wait for rank 0's report
    distributed.shutdown()
    if not main:
        return 0
    print(
        f"run-all: {summary.planned} entries, {summary.completed_before} already complete, {summary.ran} run, "
        f"{len(summary.failed)} failed, {summary.seconds / 60:.1f} min"
    )
    if summary.waited or summary.by_others:
        print(f"  {summary.waited} waited for another run-all on this store, {summary.by_others} run by it (not run again here)")
    if summary.jobs:
        waited = slurm is None or slurm.wait
        print(f"{'ran' if waited else 'submitted'} {len(summary.jobs)} job(s): {', '.join(summary.jobs)}")
    for line in summary.skipped:
        print(f"  skipped {line}")
    for line in summary.failed:
        print(f"  FAILED {line}")
    if not args.no_report and (slurm is None or slurm.wait):
        report = Path(args.out) if args.out else Path(args.results).parent
        print(f"report: {report / 'report' / 'report.md'} (.tex, .html)")
    return 1 if summary.failed else 0
