"""`alignbench datasets`: the dataset catalog (bench.data.catalog): name, tasks, classes, splits, native size, layout.

With --json: one object per dataset (bench.data.catalog.Dataset.describe), classes included. `--dataset FILE.yaml`
checks and shows a dataset file of your own.
"""

from __future__ import annotations

import json

from alignbench.bench.errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser("datasets", help="list the datasets alignbench reads (`--data NAME=PATH`), with their layouts")
    parser.add_argument("--task", help="only the datasets of this task")
    parser.add_argument("--dataset", action="append", help="only this dataset, or a dataset file NAME.yaml of your own (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the list as JSON instead of a table")
    parser.set_defaults(handler=run_datasets)


def run_datasets(args) -> int:
    from alignbench.bench.commands.evaluate import semantic_dataset
    from alignbench.bench.data.catalog import get_dataset, list_datasets
    from alignbench.reports.console import text_table
    from alignbench.tasks import TASKS

    if args.task is not None and args.task not in TASKS:
        raise UserError(f"--task: unknown task {args.task!r}; choose from {', '.join(TASKS)}")
    if args.dataset:
        chosen = [semantic_dataset(name) if name.endswith((".yaml", ".yml")) else get_dataset(name) for name in args.dataset]
    else:
        chosen = list_datasets(args.task)
    described = [dataset.describe() for dataset in chosen if args.task is None or args.task in dataset.tasks]
    if args.json:
        print(json.dumps(described, indent=2, ensure_ascii=False))
        return 0
    rows = []
    for entry in described:
        classes = str(entry["num_classes"]) if entry["num_classes"] is not None else "from annotations"
        size = "x".join(str(v) for v in entry["native_size"]) if entry["native_size"] else "varies"
        rows.append([entry["name"], classes, size, ", ".join(entry["splits"]), ", ".join(entry["tasks"])])
    print(text_table(["dataset", "classes", "native size", "splits", "tasks"], rows))
    print("\nwhat each is, and its layout under the folder of `--data NAME=PATH`:")
    for entry in described:
        print(f"  {entry['name']}: {entry['title']}\n      {entry['layout']}")
    return 0
