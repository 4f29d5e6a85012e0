"""`alignbench train`: train (or resume) one registered model and evaluate it; or evaluate given weights.

Under torchrun (`torchrun --nproc-per-node N -m alignbench train MODEL ...`) the processes train with DDP (the
recipe's total batch split over them) and share the evaluation; rank 0 prints and writes --json.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alignbench.bench.commands.common import budget_name, device_name, output_file, output_folder, seed
from alignbench.bench.errors import UserError


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a registered model with a paper recipe and evaluate it (or evaluate --checkpoint with --eval-only)",
        description="A killed run resumes from its last checkpoint in --out.",
    )
    train.add_argument("model", help="registered model name (see `alignbench models`)")
    train.add_argument("--recipe", help="training recipe (default: the one of the suite that uses the model)")
    train.add_argument("--data", default="synthetic",
                       help="'synthetic' (default), NAME=PATH for a dataset of `alignbench datasets` (camvid=PATH, cityscapes=PATH, "
                       "coco=PATH, ...) or a dataset file FILE.yaml[=ROOT]")
    train.add_argument("--eval-split", default="val", metavar="SPLIT", help="the split evaluated (default val)")
    train.add_argument("--budget", type=budget_name, default="smoke", help="smoke (default), short or paper")
    train.add_argument("--device", type=device_name, help="cpu, cuda or cuda:N (default: cuda when available)")
    train.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    train.add_argument("--out", type=output_folder, default="alignbench-output/train", help="checkpoints go to OUT/<model>-<key>/")
    train.add_argument("--checkpoint", "--weights", dest="checkpoint", metavar="PATH",
                       help="start from these weights (ours, SFSegNets or detectron2 checkpoints; --weights is an alias)")
    train.add_argument("--backbone-weights", metavar="PATH", help="ImageNet-pretrained backbone weights to start training from")
    train.add_argument("--eval-only", action="store_true", help="evaluate --checkpoint without training")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                       help="override a recipe or budget field, e.g. iterations=20, batch=4, lr=0.02, crop=64x128, eval_size=128x256 "
                       "(repeatable; part of the training key and written to --json)")
    train.add_argument("--json", type=output_file, metavar="FILE", help="write the scores as JSON (atomically)")
    train.set_defaults(handler=run_train)


def run_train(args) -> int:
    import torch

    from alignbench.bench import distributed
    from alignbench.bench.io import write_json_atomic
    from alignbench.bench.pipeline import Evaluation, Pipeline, random_init_warning
    from alignbench.bench.planning import default_device
    from alignbench.bench.recipes import apply_overrides, parse_overrides, training_config
    from alignbench.bench.recipes import budget as get_budget
    from alignbench.bench.suites import default_recipe
    from alignbench.bench.tasks import resolve_data
    from alignbench.metrics import vocabulary

    if args.eval_only and not args.checkpoint:
        raise UserError("--eval-only: give the weights to evaluate with --checkpoint PATH (a model with random weights measures nothing)")
    from alignbench import models

    try:
        info = models.get_info(args.model)
    except ValueError as error:
        raise UserError(str(error)) from None
    recipe = args.recipe or default_recipe(args.model)
    overrides = parse_overrides(args.overrides)
    config, budget = apply_overrides(training_config(recipe, args.budget), get_budget(args.budget), overrides)
    device = args.device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    distributed.init_from_env(device)  # a no-op unless started by torchrun with several processes
    device = distributed.rank_device(device)
    progress = sys.stderr.isatty() and distributed.is_main()
    with distributed.main_first():  # rank 0 generates / exports shared data, the others then read it
        sources = [s for s in resolve_data([args.data], progress=progress) if s.supports(info.task)]
    if not sources:
        raise UserError(f"--data {args.data}: holds no {info.task} data")
    pipeline = Pipeline(
        args.model, sources[0], config, budget, seed=args.seed, checkpoint=args.checkpoint,
        backbone_weights=args.backbone_weights, train_model=not args.eval_only, device=device, progress=progress,
        eval_split=args.eval_split,
    )
    if distributed.is_main():
        random_init_warning(int(pipeline.train_model and pipeline.random_init), args.budget)
    accuracy = set(vocabulary.task_metrics(info.task)) - vocabulary.of_evaluators(vocabulary.task_metrics(info.task), "complexity", "speed")
    eval_size = overrides.evaluation.get("eval_size")
    (outcome,) = pipeline.run([Evaluation(tuple(sorted(accuracy)), eval_size)], checkpoint_root=Path(args.out))
    metrics = outcome.metrics
    main = distributed.is_main()
    distributed.barrier()
    distributed.shutdown()
    if not main:
        return 0
    for key, value in metrics.items():
        if isinstance(value, (int, float)):
            print(f"{key:>10s}  {value:.4f}" if isinstance(value, float) else f"{key:>10s}  {value}")
    if args.json:
        write_json_atomic(args.json, {"model": args.model, "recipe": recipe, "budget": args.budget, "data": sources[0].description,
                                      "eval_split": args.eval_split,
                                      "checkpoint": str(pipeline.checkpoint) if pipeline.checkpoint else None,
                                      "backbone_weights": str(pipeline.backbone_weights) if pipeline.backbone_weights else None,
                                      "code": pipeline.code, "overrides": overrides.to_json(), "train": config.to_json(),
                                      "training_key": pipeline.training_key, "metrics": metrics})
    return 0
