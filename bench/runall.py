"""`alignbench run-all` (interim): what exists so far, end to end on the built-in synthetic data.

Until the harness lands this generates (or reuses) the cached synthetic Cityscapes tree, evaluates the
oracle coarse-resolution baselines (bench.baselines) on its val split with the semantic evaluator, and
prints and writes the table. The harness issue replaces it with suites, training and paper tables.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bench.baselines import coarse_prediction
from bench.data.cityscapes import find_frames, read_frame
from bench.data.synthetic import SynthSpec
from bench.io import write_json_atomic
from metrics.boundary import DEFAULT_BANDS
from metrics.semantic import SemanticAccumulator
from reports.console import BOUNDARY_FOOTNOTE, percent, text_table

log = logging.getLogger(__name__)

BASELINE_STRIDES = (4, 8, 16, 32)


def run_all(data: str = "synthetic", out_dir: Path = Path("alignbench-output"), progress: bool = True) -> dict:
    """Evaluate the baselines on `data` ('synthetic' or 'cityscapes=PATH'); write JSON and Markdown."""
    from tqdm import tqdm

    from bench.data.cache import ensure_synthetic
    from bench.errors import UserError

    if data == "synthetic":
        root = ensure_synthetic(SynthSpec(), progress=progress)
        description = f"synthetic ({root.name})"
    elif data.startswith("cityscapes="):
        root = Path(data.split("=", 1)[1])
        description = f"Cityscapes at {root}"
    else:
        raise UserError(f"--data: expected 'synthetic' or 'cityscapes=PATH', got {data!r}")
    frames = find_frames(root, "val", require_images=False)
    accumulators = {stride: SemanticAccumulator(bands=DEFAULT_BANDS) for stride in BASELINE_STRIDES}
    for frame in tqdm(frames, desc="baselines", unit="img", disable=not progress):
        sample = read_frame(frame, with_image=False)
        for stride, accumulator in accumulators.items():
            accumulator.update(coarse_prediction(sample.label_ids, stride), sample.label_ids, sample.instance_ids)
    results = {f"oracle-1/{stride}": acc.compute().to_json() for stride, acc in accumulators.items()}
    summary = {"data": description, "split": "val", "n_images": len(frames), "results": results}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "run-all.json", summary)
    table = baseline_table(results)
    (out_dir / "run-all.md").write_text(
        f"# alignbench run-all (interim)\n\nData: {description}, val split, {len(frames)} images.\n\n"
        f"```\n{table}\n```\n\n{BOUNDARY_FOOTNOTE}\n"
    )
    print(f"data: {description}, val split, {len(frames)} images")
    print(table)
    print(BOUNDARY_FOOTNOTE)
    print(f"written: {out_dir / 'run-all.json'}, {out_dir / 'run-all.md'}")
    return summary


def baseline_table(results: dict) -> str:
    """Rows: baselines; columns: mIoU, iIoU, category IoU, boundary-band mIoU per width (percent)."""
    widths = [str(w) for w in DEFAULT_BANDS]
    header = ["method", "mIoU", "iIoU", "IoU_cat"] + [f"{w}px" for w in widths]
    rows = [
        [name, percent(r["mIoU"]), percent(r["iIoU"]), percent(r["IoU_category"])]
        + [percent(r["boundary_mIoU"][w]) for w in widths]
        for name, r in results.items()
    ]
    return text_table(header, rows)
