"""`alignbench eval semantic`: score prediction PNGs against a Cityscapes ground-truth tree."""

from __future__ import annotations

from bench.commands.common import band_widths, positive_int


def register(subparsers) -> None:
    evaluate = subparsers.add_parser("eval", help="evaluate stored predictions")
    tasks = evaluate.add_subparsers(dest="task", metavar="TASK", required=True)
    semantic = tasks.add_parser(
        "semantic",
        help="Cityscapes mIoU, iIoU, category scores and boundary-band mIoU",
        description="Predictions: single-channel PNGs named <city>_<seq>_<frame>*.png anywhere under --pred.",
    )
    semantic.add_argument("--gt", required=True, help="Cityscapes root (holding gtFine/<split>/)")
    semantic.add_argument("--pred", required=True, help="folder of prediction PNGs")
    semantic.add_argument("--split", default="val", help="ground-truth split (default val)")
    semantic.add_argument(
        "--pred-ids", choices=("label", "train"), default="label",
        help="predictions hold label ids 0..33 (default) or train ids 0..18 / 255",
    )
    semantic.add_argument("--bands", type=band_widths, default=(3, 5, 8, 12), help="boundary band widths in px (default 3,5,8,12)")
    semantic.add_argument("--instance-boundaries", action="store_true", help="count instance outlines as boundaries too")
    semantic.add_argument("--workers", type=positive_int, default=1, help="processes that decode and accumulate (default 1)")
    semantic.add_argument("--json", metavar="OUT", help="write the scores as JSON (atomically, on success only)")
    semantic.add_argument("--quiet", action="store_true", help="print no table")
    semantic.set_defaults(handler=run_semantic)


def run_semantic(args) -> int:
    import sys

    from bench.evaluation.semantic import SemanticEvalConfig, evaluate_semantic_files
    from bench.io import write_json_atomic
    from reports.console import BOUNDARY_FOOTNOTE, semantic_table

    config = SemanticEvalConfig(bands=args.bands, pred_ids=args.pred_ids, instance_boundaries=args.instance_boundaries)
    result = evaluate_semantic_files(
        args.gt, args.pred, args.split, config, workers=args.workers, progress=sys.stderr.isatty()
    ).to_json()
    if args.json:
        write_json_atomic(args.json, result)
    if not args.quiet:
        print(semantic_table(result))
        if args.bands:
            print(BOUNDARY_FOOTNOTE)
    return 0
