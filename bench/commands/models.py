"""`alignbench models`: the registered models, with the paper row each reproduces.

With --params every model is built with 19 classes (Cityscapes) on PyTorch's meta device (no memory, no
weights) and its parameter count is printed beside the paper's, with the difference in percent.
"""

from __future__ import annotations

import json

from alignbench.bench.errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the registered models (task, paper reference, parameters)")
    parser.add_argument("--task", help="only models of this task (semantic, detection, instance, panoptic)")
    parser.add_argument("--json", action="store_true", help="print the list as JSON instead of a table")
    parser.add_argument(
        "--params", action="store_true", help="build each model and show its parameter count beside the paper's"
    )
    parser.set_defaults(handler=run_models)


def run_models(args) -> int:
    import dataclasses

    from alignbench import models
    from alignbench.reports.console import text_table

    if args.task is not None and args.task not in models.TASKS:
        raise UserError(f"--task: unknown task {args.task!r}; choose from {', '.join(models.TASKS)}")
    rows = []
    for info in models.list_models(task=args.task):
        row = dataclasses.asdict(info)
        row["input_size"] = list(info.input_size)
        if args.params:
            measured = models.measured_params(info.name, num_classes=19) / 1e6
            row["params_m"] = round(measured, 3)
            paper = info.paper_params_m
            row["params_diff_percent"] = None if paper is None else round(100.0 * (measured - paper) / paper, 2)
        rows.append(row)

    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print(f"no registered models for task {args.task!r}")
        return 0
    header = ["model", "task", "paper", "table", "row", "input"]
    if args.params:
        header += ["params (M)", "paper (M)", "diff"]
    lines = []
    for row in rows:
        line = [row["name"], row["task"], row["paper"], row["table"], row["row"], "x".join(map(str, row["input_size"]))]
        if args.params:
            paper = row["paper_params_m"]
            diff = row["params_diff_percent"]
            line += [
                f"{row['params_m']:.2f}",
                "-" if paper is None else f"{paper:.1f}",
                "-" if diff is None else f"{diff:+.2f}%",
            ]
        lines.append(line)
    print(text_table(header, lines))
    if args.params:
        print("\nparameters with 19 classes, backbone BatchNorm frozen (as the papers count)")
    return 0
