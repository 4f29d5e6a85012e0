"""`alignbench profile`: parameters, GMACs (the papers' "GFLOPs") and latency of registered models."""

from __future__ import annotations

from alignbench.bench.commands.common import image_size, positive_int


def register(subparsers) -> None:
    profile = subparsers.add_parser(
        "profile",
        help="parameters, GMACs and latency of a model (or --all models)",
        description="GMACs are multiply-accumulates, what the papers call GFLOPs.",
    )
    profile.add_argument("model", nargs="?", help="registered model name (see `alignbench models`)")
    profile.add_argument("--all", action="store_true", help="a complexity table of every registered model")
    profile.add_argument("--task", help="with --all: only models of this task")
    profile.add_argument("--input", type=image_size, help="HxW (default: the model's paper input size)")
    profile.add_argument("--device", help="also time it: cpu, cuda or cuda:N (default: no timing)")
    profile.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32", help="timing precision (default fp32)")
    profile.add_argument("--batch", type=positive_int, default=1, help="timing batch size (default 1, the papers')")
    profile.add_argument("--warmup", type=positive_int, default=10, help="untimed passes (default 10)")
    profile.add_argument("--iters", type=positive_int, default=50, help="timed passes (default 50)")
    profile.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    profile.add_argument("--compile", action="store_true", help="torch.compile the model")
    profile.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN pick its fastest kernels")
    profile.add_argument("--per-module", action="store_true", help="print fvcore's per-module parameter table")
    profile.add_argument("--checkpoint", metavar="PATH", help="load these weights into MODEL before timing it")
    profile.add_argument("--json", action="store_true", help="print JSON instead of a table")
    profile.set_defaults(handler=run_profile)


def run_profile(args) -> int:
    from pathlib import Path

    from alignbench.bench.errors import UserError

    if args.all == bool(args.model):
        raise UserError("profile: give a MODEL name or --all (not both)")
    if args.device and args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: CUDA is not available on this machine")
    elif args.device and args.device != "cpu":
        raise UserError(f"--device: expected cpu, cuda or cuda:N, got {args.device!r}")
    if args.checkpoint and not args.model:
        raise UserError("--checkpoint: give the MODEL it belongs to (not --all)")
    if args.checkpoint:
        if not Path(args.checkpoint).expanduser().is_file():
            raise UserError(f"--checkpoint {args.checkpoint}: file not found")
    if args.device == "cpu" and args.dtype == "fp16":
        raise UserError("--dtype fp16: timing in fp16 needs CUDA; use bf16 or fp32 on the CPU")
    from alignbench.bench.profiling import profile_models, profile_table

    names = None if args.all else [args.model]
    rows = profile_models(
        names,
        task=args.task,
        input_size=args.input,
        device=args.device,
        timing={
            "dtype": args.dtype, "batch": args.batch, "warmup": args.warmup, "iterations": args.iters,
            "channels_last": args.channels_last, "compile": args.compile, "cudnn_benchmark": args.cudnn_benchmark,
        },
        per_module=args.per_module,
        checkpoint=str(Path(args.checkpoint).expanduser().resolve()) if args.checkpoint else None,
    )
    if args.json:
        import json

        from alignbench.bench.io import to_jsonable

        print(json.dumps(to_jsonable(rows), indent=2))
    else:
        print(profile_table(rows))
    return 0
