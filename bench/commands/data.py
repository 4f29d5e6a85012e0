"""`alignbench data synth|coco`: write synthetic street scenes in the Cityscapes layout; export COCO files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alignbench.bench.commands.common import image_size, non_negative_int, output_folder, seed
from alignbench.bench.errors import UserError


def synthetic_preset(text: str) -> str:
    """The name of a synthetic dataset preset (bench.data.synthetic.SYNTHETIC_PRESETS; imported only when given)."""
    from alignbench.bench.data.synthetic import SYNTHETIC_PRESETS

    if text not in SYNTHETIC_PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {text!r} (known: {', '.join(SYNTHETIC_PRESETS)})")
    return text


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="generate or inspect datasets")
    actions = data.add_subparsers(dest="action", metavar="ACTION", required=True)
    synth = actions.add_parser("synth", help="write procedural street scenes in the exact Cityscapes layout")
    synth.add_argument("--out", type=output_folder, required=True, help="folder to write leftImg8bit/ and gtFine/ into")
    synth.add_argument("--preset", type=synthetic_preset, default="synthetic",
                       help="a named dataset, the options below change it (default 'synthetic': 24 train, 8 val, 256x512; "
                       "'synthetic-miniature': the miniature protocol's 128 train, 64 val, 128x256)")
    synth.add_argument("--n-train", type=non_negative_int, help="training scenes (default: the preset's)")
    synth.add_argument("--n-val", type=non_negative_int, help="validation scenes (default: the preset's)")
    synth.add_argument("--size", type=image_size, help="HxW (default: the preset's)")
    synth.add_argument("--seed", type=seed, help="random seed (default: the preset's, 0)")
    synth.add_argument("--density", type=float, help="how many things per scene, relative (default: the preset's, 1.0)")
    synth.add_argument("--overwrite", action="store_true", help="replace a different synthetic dataset in --out")
    synth.set_defaults(handler=run_synth)

    coco = actions.add_parser(
        "coco",
        help="write COCO instances and panoptic annotations of a Cityscapes-layout tree (synthetic or real)",
        description="Writes OUT/annotations/{instances,panoptic}_<split>.json and OUT/annotations/panoptic_<split>/*.png "
        "from gtFine/<split>/*_instanceIds.png, with cityscapesscripts' createPanopticImgs conventions. "
        "Image file names are relative to ROOT/leftImg8bit/<split>/.",
    )
    coco.add_argument("--root", required=True, help="Cityscapes root (holding gtFine/<split>/)")
    coco.add_argument("--out", type=output_folder, required=True, help="folder to write annotations/ into")
    coco.add_argument("--split", default="val", help="split or comma-separated splits (default val)")
    coco.set_defaults(handler=run_coco)


def run_synth(args) -> int:
    from dataclasses import replace

    from alignbench.bench.data.cache import prepare_synthetic_folder
    from alignbench.bench.data.synthetic import SYNTHETIC_PRESETS

    if args.density is not None and not 0 < args.density <= 10:

        raise UserError(f"--density must be in (0, 10], got {args.density}")
    given = {"n_train": args.n_train, "n_val": args.n_val, "size": args.size, "seed": args.seed, "density": args.density}
    spec = replace(SYNTHETIC_PRESETS[args.preset], **{key: value for key, value in given.items() if value is not None})
    root = prepare_synthetic_folder(Path(args.out), spec, overwrite=args.overwrite)
    print(f"synthetic Cityscapes tree: {root} ({spec.n_train} train, {spec.n_val} val, {spec.size[0]}x{spec.size[1]})")
    return 0


def run_coco(args) -> int:
    from alignbench.bench.data.coco import export_coco

    splits = [split.strip() for split in args.split.split(",") if split.strip()]
    if not splits:

        raise UserError(f"--split: expected a split name such as val, got {args.split!r}")
    for split in splits:
        export = export_coco(args.root, args.out, split, progress=sys.stderr.isatty())
        print(
            f"{split}: {export.n_images} images, {export.n_instances} instances, {export.n_segments} panoptic segments\n"
            f"  {export.instances_json}\n  {export.panoptic_json}\n  {export.panoptic_dir}/\n  images: {export.image_dir}/"
        )
    return 0
