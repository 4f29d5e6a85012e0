"""`alignbench profile`: parameters, GMACs (the papers' "GFLOPs") and latency of registered models."""

from __future__ import annotations

import json
from pathlib import Path

from alignbench.bench.commands.common import device_name, image_size, output_file, positive_int
from alignbench.bench.errors import UserError


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
    profile.add_argument("--device", type=device_name, help="also time it: cpu, cuda or cuda:N (default: no timing)")
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
    profile.add_argument("--out", type=output_file, metavar="FILE",
                         help="also write the table (JSON with --json) to FILE, rewritten atomically after every model")
    profile.set_defaults(handler=run_profile)


def run_profile(args) -> int:
    if args.all == bool(args.model):
        raise UserError("profile: give a MODEL name or --all (not both)")
    if args.device and args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: CUDA is not available on this machine")
    if args.checkpoint and not args.model:
        raise UserError("--checkpoint: give the MODEL it belongs to (not --all)")
    if args.checkpoint:
        if not Path(args.checkpoint).expanduser().is_file():
            raise UserError(f"--checkpoint {args.checkpoint}: file not found")
    if args.device == "cpu" and args.dtype == "fp16":
        raise UserError("--dtype fp16: timing in fp16 needs CUDA; use bf16 or fp32 on the CPU")
    from alignbench.bench.io import write_atomic
    from alignbench.bench.profiling import profile_models

    measured: list[dict] = []

    def keep(rows: list[dict]) -> None:
        """After every model: remember the rows, and rewrite --out, so a later crash or kill keeps them."""
        measured[:] = rows
        if args.out:
            text = render(rows, args.json)
            write_atomic(args.out, lambda handle: handle.write(text))

    try:
        profile_models(
            None if args.all else [args.model],
            task=args.task,
            input_size=args.input,
            device=args.device,
            timing={
                "dtype": args.dtype, "batch": args.batch, "warmup": args.warmup, "iterations": args.iters,
                "channels_last": args.channels_last, "compile": args.compile, "cudnn_benchmark": args.cudnn_benchmark,
            },
            per_module=args.per_module,
            on_row=keep,
            checkpoint=str(Path(args.checkpoint).expanduser().resolve()) if args.checkpoint else None,
        )
    finally:
        if measured:  # also when interrupted or failing part-way: the rows measured so far are printed
            print(render(measured, args.json), end="")
    return 0


def render(rows: list[dict], as_json: bool) -> str:
    """The rows as the complexity table or as JSON, ending with a newline."""
    if as_json:

        from alignbench.bench.io import to_jsonable

        return json.dumps(to_jsonable(rows), indent=2) + "\n"
    from alignbench.bench.profiling import profile_table

    return profile_table(rows) + "\n"
