"""`alignbench perf semantic`: speed of our evaluator against cityscapesscripts on the same files."""

from __future__ import annotations

from bench.commands.common import image_size, positive_int


def register(subparsers) -> None:
    perf = subparsers.add_parser("perf", help="speed benchmarks (ratios against a reference, same run)")
    benchmarks = perf.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    semantic = benchmarks.add_parser(
        "semantic", help="our semantic evaluator vs cityscapesscripts' evaluateImgLists on the same PNGs"
    )
    semantic.add_argument("--n", type=positive_int, default=50, help="image pairs (default 50)")
    semantic.add_argument("--size", type=image_size, default=(1024, 2048), help="HxW (default 1024x2048)")
    semantic.add_argument("--workers", type=positive_int, default=2, help="processes for the second run (default 2)")
    semantic.add_argument("--density", type=float, default=0.15, help="things per scene, relative (default 0.15: few instances)")
    semantic.add_argument("--dir", help="write the pairs here instead of a temporary folder")
    semantic.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    semantic.set_defaults(handler=run_semantic)


def run_semantic(args) -> int:
    from pathlib import Path

    from bench.io import write_json_atomic
    from bench.perf import semantic_benchmark

    result = semantic_benchmark(
        n=args.n, size=args.size, workers=args.workers, density=args.density, root=Path(args.dir) if args.dir else None
    )
    print(result.report())
    if args.json:
        write_json_atomic(args.json, result.to_json())
    return 0
