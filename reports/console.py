"""Plain-text tables for the terminal, in the papers' style (percentages with one decimal)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

BOUNDARY_FOOTNOTE = (
    "Boundary band n px: evaluated pixels within Euclidean distance n of a ground-truth boundary pixel "
    "(an evaluated pixel with an 8-neighbour of another evaluated label; ignore regions and the image "
    "border create none); mIoU over one dataset-level confusion matrix of band pixels. n is stated at the "
    "dataset's native size (Cityscapes and the synthetic scenes: 1024x2048; CamVid: 360x480; none where image sizes "
    "vary) and scaled with the evaluated maps (ratio of the diagonals, rounded up, at least 1 px); the widths used "
    "and each band's share of the evaluated pixels are printed beside the scores."
)
# A band that holds this share of the evaluated pixels or more measures the image more than its boundaries.
WIDE_BAND_SHARE = 0.5


def band_caveat(share: float | None) -> str:
    """"" for a band that is about boundaries; a warning for one that holds most of the evaluated pixels."""
    if share is None or (isinstance(share, float) and math.isnan(share)) or share < WIDE_BAND_SHARE:
        return ""
    return f"holds {100 * share:.0f}% of the evaluated pixels: not a boundary measurement"


def percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal; '-' when undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100.0 * value:.1f}"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned first column, right-aligned others, a rule under the header."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for index, row in enumerate([header, *rows]):
        cells = [str(row[0]).ljust(widths[0])] + [str(cell).rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def semantic_table(result: Mapping) -> str:
    """The `alignbench eval semantic` summary from its JSON dict (class, category and boundary scores; iIoU and
    categories only where the dataset defines them)."""
    if "iIoU" in result:
        class_rows = [
            [name, percent(iou), percent(result["class_iIoU"].get(name))] for name, iou in result["class_IoU"].items()
        ]
        class_rows.append(["mean", percent(result["mIoU"]), percent(result["iIoU"])])
        parts = [text_table(["class", "IoU", "iIoU"], class_rows)]
    else:
        class_rows = [[name, percent(iou)] for name, iou in result["class_IoU"].items()]
        class_rows.append(["mean", percent(result["mIoU"])])
        parts = [text_table(["class", "IoU"], class_rows)]
    if result.get("category_IoU"):
        category_rows = [
            [name, percent(iou), percent(result.get("category_iIoU", {}).get(name))]
            for name, iou in result["category_IoU"].items()
            if not (iou is None or (isinstance(iou, float) and math.isnan(iou)))
        ]
        category_rows.append(["mean", percent(result["IoU_category"]), percent(result.get("iIoU_category"))])
        parts.append(text_table(["category", "IoU", "iIoU"], category_rows))
    bands = result.get("boundary_mIoU") or {}
    if bands:
        values = [v for v in bands.values() if v is not None and not math.isnan(v)]
        mean = sum(values) / len(values) if values else math.nan
        header = ["boundary band"] + [f"{width}px" for width in bands] + ["mean"]
        rows = [["mIoU"] + [percent(v) for v in bands.values()] + [percent(mean)]]
        used = result.get("boundary_width_px") or {}
        shares = result.get("boundary_pixel_share") or {}
        if used:
            rows.append(["width used (px)"] + ["/".join(str(w) for w in used.get(width, [])) for width in bands] + [""])
        if shares:
            rows.append(["share of pixels"] + [percent(shares.get(width)) for width in bands] + [""])
        parts.append(text_table(header, rows))
        caveats = [f"{width} px band {band_caveat(shares.get(width))}" for width in bands if band_caveat(shares.get(width))]
        parts.extend(caveats)
    parts.append(f"images: {result['n_images']}")
    return "\n\n".join(parts)
