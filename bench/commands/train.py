"""`alignbench train`: train (or resume) one registered model and evaluate it; or evaluate local weights.

Under torchrun (`torchrun --nproc-per-node N -m alignbench train MODEL ...`) the processes train with DDP (the
recipe's total batch split over them) and share the evaluation; rank 0 prints and writes --json.
"""

from __future__ import annotations

from alignbench.bench.commands.common import budget_name, device_name, output_file, output_folder, seed


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a registered model with a paper recipe and evaluate it (or evaluate --weights)",
        description="A killed run resumes from its last checkpoint in --out.",
    )
    train.add_argument("model", help="registered model name (see `alignbench models`)")
    train.add_argument("--recipe", help="training recipe (default: the one of the suite that uses the model)")
    train.add_argument("--data", default="synthetic", help="'synthetic' (default), 'cityscapes=PATH' or 'coco=PATH'")
    train.add_argument("--budget", type=budget_name, default="smoke", help="smoke (default), short or paper")
    train.add_argument("--device", type=device_name, help="cpu, cuda or cuda:N (default: cuda when available)")
    train.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    train.add_argument("--out", type=output_folder, default="alignbench-output/train", help="checkpoints go to OUT/<model>-<key>/")
    train.add_argument("--weights", help="load these weights first (a checkpoint of ours or a plain state dict)")
    train.add_argument("--eval-only", action="store_true", help="evaluate without training (use with --weights)")
    train.add_argument("--json", type=output_file, metavar="FILE", help="write the scores as JSON (atomically)")
    train.set_defaults(handler=run_train)


def run_train(args) -> int:
    import hashlib
    import json
    import sys
    from pathlib import Path

    import torch

    from alignbench import models
    from alignbench.bench import distributed
    from alignbench.bench.errors import UserError
    from alignbench.bench.io import write_json_atomic
    from alignbench.bench.recipes import budget as get_budget
    from alignbench.bench.recipes import training_config
    from alignbench.bench.runall import default_device
    from alignbench.bench.suites import default_recipe
    from alignbench.bench.tasks import resolve_data, task_runner
    from alignbench.bench.train import load_weights, train

    try:
        info = models.get_info(args.model)
    except ValueError as error:
        raise UserError(str(error)) from None
    recipe = args.recipe or default_recipe(args.model)
    config = training_config(recipe, args.budget, None)
    budget = get_budget(args.budget)
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
        runner = task_runner(info.task, sources[0])
        options = runner.build_options(config, budget)
    torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = models.build(args.model, **options)
    if args.weights:
        load_weights(model, args.weights)
    if not args.eval_only:
        key = hashlib.sha256(json.dumps([args.model, sources[0].description, config.to_json(), args.seed,
                                         args.weights], sort_keys=True).encode()).hexdigest()[:12]
        torch.manual_seed(args.seed)
        with distributed.main_first():
            training_set, collate = runner.training_set(config, args.seed)
        train(model, training_set, collate, config, Path(args.out) / f"{args.model}-{key}", device=device,
              progress=progress, description=args.model)
    metrics = runner.evaluate(model, device, budget, progress=progress)
    main = distributed.is_main()
    distributed.barrier()
    distributed.shutdown()
    if not main:
        return 0
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    for key, value in scalars.items():
        print(f"{key:>10s}  {value:.4f}" if isinstance(value, float) else f"{key:>10s}  {value}")
    if args.json:
        write_json_atomic(args.json, {"model": args.model, "recipe": recipe, "budget": args.budget,
                                      "data": sources[0].description, "metrics": metrics})
    return 0
