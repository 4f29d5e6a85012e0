"""`alignbench perf semantic|panoptic|coco`: speed of our evaluators against references on the same data."""

from __future__ import annotations

from pathlib import Path

from alignbench.bench.commands.common import image_size, positive_int
from alignbench.bench.errors import UserError

# The workload names of bench.perf.WORKLOADS, repeated so that building the parser imports no numpy;
# tests/test_perf_workloads.py checks that the two lists agree.
WORKLOAD_NAMES = ("small-few", "small-many", "large-few", "large-many", "classes", "fragments")


def _add_evaluator_options(parser, default_workers: int = 2) -> None:
    parser.add_argument(
        "--workload", choices=(*WORKLOAD_NAMES, "all"), default="large-few",
        help="fixture shape (default large-few; 'all' runs every one): " + ", ".join(WORKLOAD_NAMES),
    )
    parser.add_argument("--n", type=positive_int, help="image pairs (default: the workload's, 120 or 200)")
    parser.add_argument("--size", type=image_size, help="HxW (default: the workload's)")
    parser.add_argument("--workers", type=positive_int, default=default_workers, help="processes for the second run (default 2)")
    parser.add_argument("--density", type=float, help="things per scene, relative (default: the workload's)")
    parser.add_argument(
        "--repeat", type=positive_int, default=1,
        help="run the whole commands and the reference N times, alternating, and keep each one's best (default 1)",
    )
    parser.add_argument("--dir", help="write the pairs here instead of a temporary folder (one workload only)")
    parser.add_argument("--json", metavar="OUT", help="write the figures as JSON: {'workloads': [...]}")


def register(subparsers) -> None:
    perf = subparsers.add_parser("perf", help="speed benchmarks (ratios against a reference, same run)")
    benchmarks = perf.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    semantic = benchmarks.add_parser(
        "semantic", help="`alignbench eval semantic` (4 bands) vs cityscapesscripts' evaluateImgLists on the same PNGs"
    )
    _add_evaluator_options(semantic)
    semantic.set_defaults(handler=run_evaluator, evaluator="semantic")

    panoptic = benchmarks.add_parser(
        "panoptic", help="`alignbench eval panoptic` vs cityscapesscripts' panoptic evaluator (single process) on the same PNGs"
    )
    _add_evaluator_options(panoptic)
    panoptic.set_defaults(handler=run_evaluator, evaluator="panoptic")

    coco = benchmarks.add_parser("coco", help="pycocotools vs faster-coco-eval on the same synthetic detections")
    coco.add_argument("--n", type=positive_int, default=50, help="images (default 50)")
    coco.add_argument("--size", type=image_size, default=(512, 1024), help="HxW (default 512x1024)")
    coco.add_argument("--iou-type", choices=("bbox", "segm", "both"), default="both", help="default both")
    coco.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    coco.set_defaults(handler=run_coco)


def run_evaluator(args) -> int:
    from alignbench.bench.io import write_json_atomic
    from alignbench.bench.perf import panoptic_benchmark, semantic_benchmark, summary_table

    if args.density is not None and not 0 < args.density <= 20:
        raise UserError(f"--density must be in (0, 20], got {args.density}")
    workloads = WORKLOAD_NAMES if args.workload == "all" else (args.workload,)
    if args.dir and len(workloads) > 1:
        raise UserError("--dir: give one --workload, not 'all' (each workload writes its own pairs)")
    benchmark = semantic_benchmark if args.evaluator == "semantic" else panoptic_benchmark
    results = []
    for workload in workloads:
        result = benchmark(
            workload, n=args.n, size=args.size, workers=args.workers, density=args.density,
            root=Path(args.dir) if args.dir else None, repeat=args.repeat,
        )
        print(result.report(), flush=True)
        results.append(result)
    if len(results) > 1:
        print(summary_table(results))
    if args.json:
        write_json_atomic(args.json, {"workloads": [result.to_json() for result in results]})
    return 0


def run_coco(args) -> int:
    from alignbench.bench.io import write_json_atomic
    from alignbench.bench.perf import coco_benchmark

    iou_types = ("bbox", "segm") if args.iou_type == "both" else (args.iou_type,)
    result = coco_benchmark(n=args.n, size=args.size, iou_types=iou_types)
    print(result.report())
    if args.json:
        write_json_atomic(args.json, result.to_json())
    return 0
