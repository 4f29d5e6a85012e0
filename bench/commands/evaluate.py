"""`alignbench eval semantic|panoptic|coco`: score stored predictions against ground truth."""

from __future__ import annotations

import sys

from alignbench.bench.commands.common import band_widths, positive_int
from alignbench.bench.errors import UserError


def register(subparsers) -> None:
    evaluate = subparsers.add_parser("eval", help="evaluate stored predictions")
    tasks = evaluate.add_subparsers(dest="task", metavar="TASK", required=True)
    semantic = tasks.add_parser(
        "semantic",
        help="mIoU, per-class IoU and boundary-band mIoU of any dataset (Cityscapes: also iIoU and category scores)",
        description="Predictions: single-channel PNGs anywhere under --pred, named <image stem>.png (Cityscapes: "
        "<city>_<seq>_<frame>*.png, the pattern cityscapesscripts searches for).",
    )
    semantic.add_argument("--dataset", default="cityscapes",
                          help="a dataset of `alignbench datasets` or a dataset file NAME.yaml (default cityscapes)")
    semantic.add_argument("--gt", required=True, help="the dataset's root folder, in its official layout")
    semantic.add_argument("--pred", required=True, help="folder of prediction PNGs")
    semantic.add_argument("--split", default="val", help="ground-truth split (default val)")
    semantic.add_argument(
        "--pred-ids", choices=("label", "train"), default=None,
        help="predictions hold the dataset's label ids (Cityscapes' default: 0..33) or train ids 0..C-1 / 255 "
        "(the default of every other dataset)",
    )
    semantic.add_argument("--bands", type=band_widths, default=(3, 5, 8, 12), help="boundary band widths in px (default 3,5,8,12)")
    semantic.add_argument("--instance-boundaries", action="store_true", help="count instance outlines as boundaries too")
    semantic.add_argument("--workers", type=positive_int, default=1, help="processes that decode and accumulate (default 1)")
    semantic.add_argument("--json", metavar="OUT", help="write the scores as JSON (atomically, on success only)")
    semantic.add_argument("--quiet", action="store_true", help="print no table")
    semantic.set_defaults(handler=run_semantic)

    panoptic = tasks.add_parser(
        "panoptic",
        help="panoptic quality (PQ, SQ, RQ) of COCO panoptic predictions, with panopticapi's rules",
        description="COCO panoptic format: PNGs with id = R + 256 G + 256^2 B (0 = VOID) and JSON segments_info; "
        "predictions are paired with ground truth by image_id.",
    )
    panoptic.add_argument("--gt-json", required=True, help="ground-truth COCO panoptic JSON (its categories are used)")
    panoptic.add_argument("--gt-dir", required=True, help="folder of the ground-truth PNGs")
    panoptic.add_argument("--pred-json", required=True, help="prediction COCO panoptic JSON")
    panoptic.add_argument("--pred-dir", required=True, help="folder of the prediction PNGs")
    panoptic.add_argument("--workers", type=positive_int, default=1, help="processes that decode and accumulate (default 1)")
    panoptic.add_argument("--json", metavar="OUT", help="write the scores as JSON (atomically, on success only)")
    panoptic.add_argument("--quiet", action="store_true", help="print no table")
    panoptic.set_defaults(handler=run_panoptic)

    coco = tasks.add_parser(
        "coco",
        help="COCO AP, AP50, AP75, APs, APm, APl of detections (bbox) or instance masks (segm)",
        description="Ground truth: a COCO instances JSON; detections: a COCO results JSON list.",
    )
    coco.add_argument("--gt", required=True, help="COCO instances JSON")
    coco.add_argument("--dt", required=True, help="COCO results JSON (a list of detections)")
    coco.add_argument("--iou-type", choices=("bbox", "segm"), required=True, help="box or mask IoU")
    coco.add_argument(
        "--backend", choices=("pycocotools", "faster-coco-eval"), default="pycocotools",
        help="COCOeval implementation: pycocotools (faster-coco-eval is refused: not bit-identical)",
    )
    coco.add_argument("--json", metavar="OUT", help="write the scores as JSON (atomically, on success only)")
    coco.add_argument("--quiet", action="store_true", help="print no table")
    coco.set_defaults(handler=run_coco)


def run_semantic(args) -> int:
    from alignbench.bench.evaluation.parallel import keep_freed_memory_for_reuse
    from alignbench.bench.evaluation.semantic import SemanticEvalConfig, evaluate_semantic_files
    from alignbench.bench.io import write_json_atomic
    from alignbench.reports.console import BOUNDARY_FOOTNOTE, semantic_table

    keep_freed_memory_for_reuse()  # forked workers inherit it
    dataset = semantic_dataset(args.dataset)
    if args.instance_boundaries and not dataset.labels.defines_instance_scores:
        raise UserError(f"--instance-boundaries: {dataset.name} has no instance maps")
    config = SemanticEvalConfig(dataset, bands=args.bands, pred_ids=args.pred_ids, instance_boundaries=args.instance_boundaries)
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


def semantic_dataset(name: str):
    """The semantic dataset `--dataset` names: a registered one, or a dataset file (NAME.yaml)."""
    from alignbench.bench.data.catalog import get_dataset

    if name.endswith((".yaml", ".yml")):
        from alignbench.bench.data.folder import load_dataset_file

        return load_dataset_file(name)
    dataset = get_dataset(name)
    if "semantic" not in dataset.tasks:
        raise UserError(f"--dataset {name}: has no semantic labels (its tasks: {', '.join(dataset.tasks)})")
    return dataset


def run_panoptic(args) -> int:
    from alignbench.bench.evaluation.panoptic import evaluate_panoptic_files, panoptic_table
    from alignbench.bench.evaluation.parallel import keep_freed_memory_for_reuse
    from alignbench.bench.io import write_json_atomic

    keep_freed_memory_for_reuse()  # forked workers inherit it
    result = evaluate_panoptic_files(
        args.gt_json, args.gt_dir, args.pred_json, args.pred_dir, workers=args.workers, progress=sys.stderr.isatty()
    )
    if args.json:
        write_json_atomic(args.json, result.to_json())
    if not args.quiet:
        print(panoptic_table(result))
    return 0


def run_coco(args) -> int:
    from alignbench.bench.evaluation.coco import coco_table, evaluate_coco_files
    from alignbench.bench.io import write_json_atomic

    result = evaluate_coco_files(args.gt, args.dt, args.iou_type, args.backend)
    if args.json:
        write_json_atomic(args.json, result.to_json())
    if not args.quiet:
        print(coco_table(result))
    return 0
