"""`alignbench perf semantic|panoptic|coco`: speed of our evaluators against references on the same data."""

from __future__ import annotations

from alignbench.bench.commands.common import image_size, positive_int


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

    panoptic = benchmarks.add_parser(
        "panoptic", help="our PQ evaluator vs cityscapesscripts' panoptic evaluator (single process) on the same PNGs"
    )
    panoptic.add_argument("--n", type=positive_int, default=20, help="image pairs (default 20)")
    panoptic.add_argument("--size", type=image_size, default=(1024, 2048), help="HxW (default 1024x2048)")
    panoptic.add_argument("--workers", type=positive_int, default=2, help="processes for the second run (default 2)")
    panoptic.add_argument("--density", type=float, default=1.0, help="things per scene, relative (default 1.0)")
    panoptic.add_argument("--dir", help="write the pairs here instead of a temporary folder")
    panoptic.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    panoptic.set_defaults(handler=run_panoptic)

    coco = benchmarks.add_parser("coco", help="pycocotools vs faster-coco-eval on the same synthetic detections")
    coco.add_argument("--n", type=positive_int, default=50, help="images (default 50)")
    coco.add_argument("--size", type=image_size, default=(512, 1024), help="HxW (default 512x1024)")
    coco.add_argument("--iou-type", choices=("bbox", "segm", "both"), default="both", help="default both")
    coco.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    coco.set_defaults(handler=run_coco)


def run_semantic(args) -> int:
    from pathlib import Path

    from alignbench.bench.io import write_json_atomic
    from alignbench.bench.perf import semantic_benchmark

    result = semantic_benchmark(
        n=args.n, size=args.size, workers=args.workers, density=args.density, root=Path(args.dir) if args.dir else None
    )
    print(result.report())
    if args.json:
        write_json_atomic(args.json, result.to_json())
    return 0


def run_panoptic(args) -> int:
    from pathlib import Path

    from alignbench.bench.io import write_json_atomic
    from alignbench.bench.perf import panoptic_benchmark

    if not 0 < args.density <= 10:
        from alignbench.bench.errors import UserError

        raise UserError(f"--density must be in (0, 10], got {args.density}")
    result = panoptic_benchmark(
        n=args.n, size=args.size, workers=args.workers, density=args.density, root=Path(args.dir) if args.dir else None
    )
    print(result.report())
    if args.json:
        write_json_atomic(args.json, result.to_json())
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
