"""Figures for the analysis notebooks and the HTML report: aligned features, flow fields, errors, bands.

Every function here is a pure function of arrays (numpy arrays or torch tensors, read through
`__array__` / `.detach().cpu()`, so this module imports no torch and no model code) and returns a
`matplotlib.figure.Figure` built without pyplot, so nothing is left open in pyplot's global state: a
notebook shows a returned figure, a report saves it with `figure.savefig`.

Conventions (the same in every function):
- image: (H, W, 3) RGB, uint8 or float in [0, 1]; a (3, H, W) tensor is accepted too.
- feature map: (C, H, W), or (1, C, H, W) with a batch of one.
- flow: (2, H, W) (or (1, 2, H, W)); channel 0 is the horizontal component x (positive: right), channel 1
  the vertical component y (positive: down, image rows), in pixels of the flow's own grid. A flow
  vector at a pixel points to where that pixel's feature is taken from (SFNet's warp samples the coarse
  map at p + flow(p); a deformable conv samples at its kernel point + offset).
- label maps: *train ids* (0..C-1, 255 = ignored), as the models predict them, of a label table `labels`
  (metrics.labels.LabelSpec: a dataset's `dataset.labels`, which gives class names and colours; default
  Cityscapes, whose train ids are 0..18).
- scores (IoU, mIoU) are fractions in [0, 1]; the figures print them in percent, as the papers do.

Middlebury colour coding (Baker et al., "A Database and Evaluation Methodology for Optical Flow",
ICCV 2007; the colour code of its `flow-code/colorcode.cpp`, which SFNet Fig. 2 and 5 cite as [2]): a
colour wheel of 55 hues built from six transitions red-yellow 15, yellow-green 6, green-cyan 4,
cyan-blue 11, blue-magenta 13, magenta-red 6 (more steps where the eye tells more shades apart);
a vector (u, v) takes the wheel colour at angle atan2(-v, -u) / pi in [-1, 1] mapped linearly onto the
wheel, interpolated between neighbouring entries; its magnitude, normalised by the largest one shown,
is the saturation (0: white, 1: the full wheel colour) and vectors beyond the normalising magnitude are
darkened to 75 % value. With image coordinates this gives right = red, down = yellow-orange,
left = cyan-blue, up = violet. As in colorcode.cpp, angles in [-1, 1] map onto wheel entries 0 .. 54, so
the last step (magenta-red back to red) is never interpolated: vectors just above and just below "right"
differ slightly in colour (a seam kept so that the colours equal the published code's).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Patch
from matplotlib.quiver import Quiver

from alignbench.metrics.boundary import DEFAULT_BANDS, band_levels, boundary_mask, scaled_widths, validate_bands
from alignbench.metrics.labels import CITYSCAPES, IGNORE_TRAIN_ID, LabelSpec

log = logging.getLogger(__name__)

# Middlebury colour-wheel transitions (colorcode.cpp, see the module docstring): steps per segment.
WHEEL_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))
HEATMAP_CMAP = "jet"  # SFNet Fig. 2: "larger values are denoted by hot colors"
BAND_CMAP = "viridis_r"  # narrowest band brightest
PANEL_WIDTH = 3.6  # inches per image panel


# --- array helpers ---------------------------------------------------------------------------------------


def as_array(value: Any) -> np.ndarray:
    """A numpy array from a numpy array or a (CPU or CUDA, possibly grad-tracking) torch tensor."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _squeeze_batch(array: np.ndarray, dims: int, what: str) -> np.ndarray:
    """Drop a leading batch axis of size one; require `dims` dimensions."""
    if array.ndim == dims + 1 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != dims:
        raise ValueError(f"{what}: expected {dims} dimensions (or a batch of one), got shape {array.shape}")
    return array


def as_rgb_image(image: Any) -> np.ndarray:
    """(H, W, 3) uint8 from an (H, W, 3) or (3, H, W) image, uint8 or float in [0, 1]."""
    array = _squeeze_batch(as_array(image), 3, "image")
    if array.shape[-1] != 3 and array.shape[0] == 3:
        array = np.moveaxis(array, 0, -1)
    if array.shape[-1] != 3:
        raise ValueError(f"image: expected 3 colour channels, got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    return (np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def as_flow(flow: Any) -> np.ndarray:
    """(2, H, W) float64 flow (x, y) from (2, H, W) or (1, 2, H, W)."""
    array = _squeeze_batch(as_array(flow), 3, "flow").astype(np.float64)
    if array.shape[0] != 2:
        raise ValueError(f"flow: expected 2 channels (x, y) first, got shape {array.shape}")
    return array


def as_label_map(labels: Any, what: str = "labels", table: LabelSpec = CITYSCAPES) -> np.ndarray:
    """(H, W) int64 train ids, checked to be 0..C-1 (C classes of `table`) or 255."""
    array = _squeeze_batch(as_array(labels), 2, what).astype(np.int64)
    count = table.num_train_ids
    bad = ((array >= count) & (array != IGNORE_TRAIN_ID)) | (array < 0)
    if bad.any():
        raise ValueError(f"{what}: train ids must be 0..{count - 1} or {IGNORE_TRAIN_ID}, found {int(array[bad][0])}")
    return array


def feature_heatmap(feature: Any, channel: int | None = None) -> np.ndarray:
    """(H, W) float map of a (C, H, W) feature: the mean over channels (SFNet Fig. 2 "averaging along the
    channel dimension"), or one chosen channel."""
    array = _squeeze_batch(as_array(feature), 3, "feature").astype(np.float64)
    if channel is None:
        return array.mean(axis=0)
    if not -array.shape[0] <= channel < array.shape[0]:
        raise ValueError(f"channel {channel} outside a feature of {array.shape[0]} channels")
    return array[channel]


def normalize(values: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Scale to [0, 1] between `low` and `high` (default: the map's finite min and max); a constant map is 0."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if low is None:
        low = float(finite.min()) if finite.size else 0.0
    if high is None:
        high = float(finite.max()) if finite.size else 0.0
    if high <= low:
        return np.zeros_like(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


# --- flow colour coding -----------------------------------------------------------------------------------


def color_wheel() -> np.ndarray:
    """The Middlebury colour wheel: (55, 3) float RGB in [0, 1], one row per hue step (see module docstring).

    Each transition ramps one channel linearly (floor(255 * i / n) for step i of n) while the others hold.
    """
    rows: list[tuple[float, float, float]] = []
    for name, steps in WHEEL_SEGMENTS:
        for i in range(steps):
            ramp = math.floor(255 * i / steps)
            rows.append({
                "RY": (255, ramp, 0),            # red -> yellow: green rises
                "YG": (255 - ramp, 255, 0),      # yellow -> green: red falls
                "GC": (0, 255, ramp),            # green -> cyan: blue rises
                "CB": (0, 255 - ramp, 255),      # cyan -> blue: green falls
                "BM": (ramp, 0, 255),            # blue -> magenta: red rises
                "MR": (255, 0, 255 - ramp),      # magenta -> red: blue falls
            }[name])
    return np.asarray(rows, dtype=np.float64) / 255.0


def flow_to_color(flow: Any, max_magnitude: float | None = None) -> np.ndarray:
    """(H, W, 3) uint8 Middlebury colour coding of a flow: hue = direction, saturation = magnitude.

    `max_magnitude` is the magnitude shown fully saturated (default: the largest finite magnitude of this
    flow, so a figure shows directions even for tiny flows; pass one value to compare several flows).
    Larger vectors are darkened; zero flow is white; non-finite vectors are black.
    """
    u, v = as_flow(flow)
    invalid = ~(np.isfinite(u) & np.isfinite(v))
    u, v = np.where(invalid, 0.0, u), np.where(invalid, 0.0, v)
    magnitude = np.hypot(u, v)
    if max_magnitude is None:
        max_magnitude = float(magnitude.max()) if magnitude.size else 0.0
    radius = magnitude / max_magnitude if max_magnitude > 0 else np.zeros_like(magnitude)
    wheel = color_wheel()
    n = len(wheel)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    position = (angle + 1.0) / 2.0 * (n - 1)  # onto wheel entries 0 .. n-1
    k0 = np.floor(position).astype(np.int64)
    k1 = (k0 + 1) % n
    fraction = (position - k0)[..., None]
    color = (1.0 - fraction) * wheel[k0] + fraction * wheel[k1]
    inside = (radius <= 1.0)[..., None]
    color = np.where(inside, 1.0 - radius[..., None] * (1.0 - color), color * 0.75)
    color[invalid] = 0.0
    return (np.clip(color, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def mean_offset(offset: Any, weights: Any | None = None) -> np.ndarray:
    """(2, H, W) flow (x, y) summarising deformable-conv offsets: the mean displacement per pixel.

    `offset` is (2K, H, W) (or (1, 2K, H, W)) in torchvision's layout: channel 2k is the vertical (dy)
    and 2k + 1 the horizontal (dx) shift of sampling point k, for K = groups x kernel points (FaPN: 8 x 9
    = 72). The mean over the K points is how far the kernel's sampling pattern as a whole moved from
    the regular grid, i.e. where the aligned feature is drawn from on average; spreading of the points
    (a change of receptive field, not a shift) averages out. With `weights` (K, H, W), e.g. DCNv2's
    modulation masks, the mean is weighted by them.
    """
    array = _squeeze_batch(as_array(offset), 3, "offset").astype(np.float64)
    if array.shape[0] % 2:
        raise ValueError(f"offset: expected an even number of channels (dy, dx pairs), got {array.shape[0]}")
    dy, dx = array[0::2], array[1::2]
    if weights is None:
        return np.stack([dx.mean(axis=0), dy.mean(axis=0)])
    w = _squeeze_batch(as_array(weights), 3, "weights").astype(np.float64)
    if w.shape != dy.shape:
        raise ValueError(f"weights: expected shape {dy.shape} (one per sampling point), got {w.shape}")
    total = np.maximum(w.sum(axis=0), 1e-12)
    return np.stack([(w * dx).sum(axis=0) / total, (w * dy).sum(axis=0) / total])


def grid_sample_flow_to_pixels(flow: Any) -> np.ndarray:
    """(2, H, W) flow in pixels of its own H x W grid, from SFNet's flow units.

    SFNet's warp (models/ops/flow.py, as in the authors' code) adds flow / [W, H] to a base grid that
    spans [-1, 1] with align_corners=True, where one pixel is 2 / (W - 1); so a flow value f moves the
    sampling point by f (W - 1) / (2 W) pixels horizontally (about f / 2: SFNet eq. 2's halved flow),
    and likewise vertically with H. Figures label magnitudes in pixels, so convert before plotting.
    """
    x, y = as_flow(flow)
    height, width = x.shape
    return np.stack([x * (width - 1) / (2 * width), y * (height - 1) / (2 * height)])


def draw_color_wheel(ax: Axes, size: int = 101) -> AxesImage:
    """Draw the colour-wheel legend on `ax`: the colour of a unit vector pointing from the centre towards
    each position (screen directions: right is red, down yellow), saturation growing with the radius."""
    coords = np.linspace(-1.0, 1.0, size)
    x, y = np.meshgrid(coords, coords)  # rows go down, as image rows do
    rgba = np.zeros((size, size, 4), dtype=np.uint8)
    rgba[..., :3] = flow_to_color(np.stack([x, y]), max_magnitude=1.0)
    rgba[..., 3] = np.where(np.hypot(x, y) < 1.0, 255, 0)  # strictly inside: no stray pixels on the axes
    handle = ax.imshow(rgba, extent=(-1, 1, 1, -1), interpolation="bilinear")
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(1.05, -1.05)
    ax.set_axis_off()
    return handle


def draw_quiver(
    ax: Axes,
    flow: Any,
    *,
    step: int | None = None,
    arrows_across: int = 24,
    image_shape: Sequence[int] | None = None,
    scale: float | None = None,
    color: str = "white",
    edgecolor: str = "black",
) -> Quiver:
    """Draw a flow as arrows on `ax`, one per `step` x `step` cell (default: about `arrows_across` arrows
    along the width), at the cell's centre pixel.

    With `image_shape` (H, W) the arrows sit in image coordinates over an image of that size (positions
    and vectors scaled by image / flow size), otherwise in the flow's own pixel grid. Arrows use data
    units (`angles="xy"`) on a y axis pointing down, so an arrow points the way the flow does on screen.
    `scale` is data units per arrow-length unit (matplotlib's meaning); by default the longest arrow
    spans 0.9 of the grid step, so the figure shows the field's shape, and the title should say so.
    Arrows are `color` outlined in `edgecolor`, readable on light and dark images alike.
    """
    u, v = as_flow(flow)
    height, width = u.shape
    step = step or max(1, round(width / arrows_across))
    rows = np.arange(step // 2, height, step)
    cols = np.arange(step // 2, width, step)
    sy, sx = (image_shape[0] / height, image_shape[1] / width) if image_shape is not None else (1.0, 1.0)
    x, y = np.meshgrid((cols + 0.5) * sx - 0.5, (rows + 0.5) * sy - 0.5)
    du = np.nan_to_num(u[np.ix_(rows, cols)]) * sx
    dv = np.nan_to_num(v[np.ix_(rows, cols)]) * sy
    if scale is None:
        longest = float(np.hypot(du, dv).max()) if du.size else 0.0
        scale = longest / (0.9 * step * sx) if longest > 0 else 1.0
    quiver = ax.quiver(x, y, du, dv, angles="xy", scale_units="xy", scale=scale, color=color, pivot="tail",
                       width=0.004, headwidth=4, headlength=4.5, edgecolor=edgecolor, linewidth=0.4)
    full_h, full_w = image_shape if image_shape is not None else (height, width)
    ax.set_xlim(-0.5, full_w - 0.5)
    ax.set_ylim(full_h - 0.5, -0.5)  # y down, as image rows
    ax.set_aspect("equal")
    return quiver


# --- label colours, errors, bands -------------------------------------------------------------------------


def colorize(train_ids: Any, labels: LabelSpec = CITYSCAPES) -> np.ndarray:
    """(H, W, 3) uint8 colours of a train-id map in the table's palette (ignored pixels: the colour of its ignored
    id, black for Cityscapes' 'unlabeled')."""
    train = as_label_map(train_ids, table=labels)
    return labels.colors[labels.label_id_of_train_id[train]]


def error_map(prediction: Any, ground_truth: Any, ignore_color: Sequence[int] = (0, 0, 0), labels: LabelSpec = CITYSCAPES) -> np.ndarray:
    """(H, W, 3) uint8 error map (SFNet Fig. 6(a)): correct pixels black, wrong pixels in the colour of
    their ground-truth class. Pixels whose ground truth is ignored are not errors (the Cityscapes
    evaluation does not score them), so they get `ignore_color`: black by default, pass e.g. a grey
    (128, 128, 128) to see where they are."""
    pred = as_label_map(prediction, "prediction", labels)
    gt = as_label_map(ground_truth, "ground truth", labels)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    out = np.zeros(gt.shape + (3,), dtype=np.uint8)
    wrong = (pred != gt) & (gt != IGNORE_TRAIN_ID)
    out[wrong] = colorize(gt, labels)[wrong]
    out[gt == IGNORE_TRAIN_ID] = np.asarray(ignore_color, dtype=np.uint8)
    return out


def boundary_bands(ground_truth: Any, bands: Sequence[int] = DEFAULT_BANDS, *, labels: LabelSpec = CITYSCAPES,
                   reference_size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) uint8: index of the narrowest boundary band holding each pixel, len(bands) for none.

    The bands of boundary-band mIoU (metrics.boundary): boundary pixels are evaluated pixels with an
    8-neighbour of another evaluated class; band n holds evaluated pixels within Euclidean distance n, the widths
    stated at `reference_size` (a dataset's native size) and scaled to the map's size as the evaluation does.
    Train ids give the same boundaries as label ids (evaluated label ids and train ids correspond one to
    one); ignored pixels are in no band. Indices refer to the widths sorted ascending
    (metrics.boundary.validate_bands), as everywhere in this module (bands that coincide after scaling share
    their pixels).
    """
    widths = validate_bands(bands)
    gt = as_label_map(ground_truth, "ground truth", labels)
    evaluated = np.arange(256) < labels.num_train_ids  # by train id: 0..C-1 are scored, 255 is not
    boundary = boundary_mask(gt.astype(np.uint8), evaluated)
    scaled = scaled_widths(widths, gt.shape, reference_size)
    distinct = tuple(sorted(set(scaled)))
    distinct_levels = band_levels(boundary, distinct)
    # band j holds the pixels of its scaled width: the first band index with that width, for the nested levels
    first_band = np.array([scaled.index(width) for width in distinct] + [len(widths)], dtype=np.uint8)
    levels = first_band[distinct_levels]
    levels[gt == IGNORE_TRAIN_ID] = len(widths)
    return levels


def band_colors(n: int) -> np.ndarray:
    """(n, 3) uint8 colours of nested bands, narrowest first (a sequential colormap)."""
    samples = colormaps[BAND_CMAP](np.linspace(0.15, 0.85, n) if n > 1 else [0.5])[:, :3]
    return (samples * 255 + 0.5).astype(np.uint8)


def band_overlay(
    image: Any,
    ground_truth: Any,
    bands: Sequence[int] = DEFAULT_BANDS,
    *,
    alpha: float = 0.6,
    colors: Any | None = None,
    labels: LabelSpec = CITYSCAPES,
    reference_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8 image with the boundary bands blended in, each pixel in the colour of the narrowest
    band holding it (so every band n is the union of its colour and all narrower ones). `colors` is one
    RGB row per band, narrowest first (default: `band_colors`); `labels` and `reference_size` as in
    `boundary_bands`."""
    rgb = as_rgb_image(image)
    widths = validate_bands(bands)
    levels = boundary_bands(ground_truth, widths, labels=labels, reference_size=reference_size)
    if levels.shape != rgb.shape[:2]:
        raise ValueError(f"image {rgb.shape[:2]} and ground truth {levels.shape} differ in size")
    palette = band_colors(len(widths)) if colors is None else np.asarray(colors, dtype=np.uint8)
    if palette.shape != (len(widths), 3):
        raise ValueError(f"colors: expected one RGB row per band ({len(widths)}, 3), got shape {palette.shape}")
    out = rgb.astype(np.float64)
    inside = levels < len(palette)
    out[inside] = (1.0 - alpha) * out[inside] + alpha * palette[levels[inside]]
    return (out + 0.5).astype(np.uint8)


# --- figures ------------------------------------------------------------------------------------------------


def _figure(rows: int, cols: int, aspect: float, panel_width: float = PANEL_WIDTH) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure of rows x cols image panels of height / width `aspect` (no pyplot)."""
    figure = Figure(figsize=(panel_width * cols, panel_width * aspect * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return figure, axes


def _show_map(ax: Axes, values: np.ndarray, image_shape: tuple[int, int], low=None, high=None) -> AxesImage:
    """A heat map stretched over the image's extent (so levels of any stride line up with the image), with a
    colour bar in the map's own units (activation values between `low` and `high`, default its min and max)."""
    height, width = image_shape
    finite = np.asarray(values, np.float64)[np.isfinite(values)]
    low = float(finite.min()) if low is None and finite.size else (0.0 if low is None else low)
    high = float(finite.max()) if high is None and finite.size else (0.0 if high is None else high)
    handle = ax.imshow(normalize(values, low, high), cmap=HEATMAP_CMAP, vmin=0, vmax=1,
                       extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="bilinear")
    bar = ax.figure.colorbar(handle, ax=ax, shrink=0.8, ticks=[0, 0.5, 1])
    bar.ax.set_yticklabels([f"{v:.3g}" for v in (low, (low + high) / 2, high)], fontsize=7)
    return handle


def shared_flow_scale(flows: Mapping[str, Any], image_shape: tuple[int, int]) -> float:
    """The largest displacement over all levels, in image pixels (a level's flow is in its own grid's
    pixels: times the image / level size). One value for every level: no silent per-level rescaling."""
    largest = 0.0
    for flow in flows.values():
        u, v = as_flow(flow)
        sy, sx = image_shape[0] / u.shape[0], image_shape[1] / u.shape[1]
        magnitude = np.hypot(np.nan_to_num(u) * sx, np.nan_to_num(v) * sy)
        largest = max(largest, float(magnitude.max()) if magnitude.size else 0.0)
    return largest


def _inset_wheel(ax: Axes) -> Axes:
    """A small colour-wheel legend in the corner of `ax`."""
    inset = ax.inset_axes((0.78, 0.62, 0.22, 0.38))
    draw_color_wheel(inset)
    return inset


def alignment_figure(
    image: Any,
    columns: Mapping[str, Mapping[str, Any]],
    *,
    flows: Mapping[str, Any] | None = None,
    channel: int | None = None,
    shared_scale: bool = False,
    title: str | None = None,
    flow_label: str = "flow",
) -> Figure:
    """Feature maps before and after alignment, one row per pyramid level, beside the image.

    `columns` maps a column title to {level: (C, H, W) feature}, e.g. for FaPN Fig. 6
    {"upsampled (FAM input)": {"p2": ...}, "aligned (FAM output)": {"p2": ...}}; for SFNet Fig. 2 / 4
    add the reference (fine lateral) map and use the warped map as "after". Each map is shown as a heat
    map of its channel mean (or `channel`), stretched over the image. Every panel is scaled to its own
    range unless `shared_scale`, which uses one range per row (compare magnitudes, not only structure).
    `flows` ({level: flow}) adds a column of Middlebury flow colours with a colour-wheel legend, titled
    `flow_label` (e.g. "mean offset" for deformable-conv offsets).
    Rows follow the order of the first column's levels.
    """
    rgb = as_rgb_image(image)
    names = list(columns)
    if not names:
        raise ValueError("columns: give at least one column of feature maps")
    levels = list(columns[names[0]])
    if not levels:
        raise ValueError(f"columns[{names[0]!r}]: no pyramid levels given")
    for name in names[1:]:
        missing = [level for level in levels if level not in columns[name]]
        if missing:
            raise ValueError(f"columns[{name!r}]: no feature map for level(s) {', '.join(missing)}")
    if flows:
        missing = [level for level in levels if level not in flows]
        if missing:
            raise ValueError(f"flows: no flow for level(s) {', '.join(missing)}")
    n_cols = 1 + len(names) + (1 if flows else 0)
    figure, axes = _figure(len(levels), n_cols, rgb.shape[0] / rgb.shape[1])
    largest = shared_flow_scale(flows, rgb.shape[:2]) if flows else 0.0
    for row, level in enumerate(levels):
        axes[row, 0].imshow(rgb)
        axes[row, 0].set_ylabel(level, fontsize=12)
        maps = [feature_heatmap(columns[name][level], channel) for name in names]
        low = min(float(np.nanmin(m)) for m in maps) if shared_scale else None
        high = max(float(np.nanmax(m)) for m in maps) if shared_scale else None
        for col, (name, values) in enumerate(zip(names, maps), start=1):
            _show_map(axes[row, col], values, rgb.shape[:2], low, high)
            axes[row, col].set_title(f"{name} ({values.shape[0]}x{values.shape[1]})", fontsize=9)
        if flows:
            ax = axes[row, -1]
            flow = as_flow(flows[level])
            in_image = flow * np.array([rgb.shape[1] / flow.shape[2], rgb.shape[0] / flow.shape[1]])[:, None, None]
            ax.imshow(flow_to_color(in_image, largest), extent=(-0.5, rgb.shape[1] - 0.5, rgb.shape[0] - 0.5, -0.5))
            ax.set_title(f"{flow_label} (max {np.nanmax(np.hypot(*in_image)):.3g} image px;\n"
                         f"full colour = {largest:.3g} px, all levels)", fontsize=9)
            if row == 0:
                _inset_wheel(ax)
    axes[0, 0].set_title("image", fontsize=9)
    what = "channel mean" if channel is None else f"channel {channel}"
    figure.suptitle(title or f"feature maps ({what}; hot = large)", fontsize=11)
    return figure


def flow_figure(
    image: Any,
    flows: Mapping[str, Any],
    *,
    max_magnitude: float | None = None,
    step: int | None = None,
    arrows_across: int = 24,
    title: str | None = None,
) -> Figure:
    """Flow fields, one row per level (SFNet Fig. 5): Middlebury colours (with the colour-wheel legend)
    and arrows over the image on a subsampled grid, all in image pixels and on one scale for every level:
    full colour saturation at `max_magnitude` (default: the largest displacement of any level), and one
    arrow magnification, stated in the title (x1 is true length; larger when the largest displacement is
    shorter than a grid step, so that tiny flows stay visible without looking large)."""
    rgb = as_rgb_image(image)
    if not flows:
        raise ValueError("flows: give at least one level's flow")
    height, width = rgb.shape[:2]
    figure, axes = _figure(len(flows), 2, height / width)
    largest_all = shared_flow_scale(flows, (height, width))
    saturation = max_magnitude if max_magnitude is not None else largest_all
    grid_step = step or max(1, round(width / arrows_across))
    magnification = max(1.0, 0.9 * grid_step / largest_all) if largest_all > 0 else 1.0
    for row, (level, flow) in enumerate(flows.items()):
        flow = as_flow(flow)
        in_image = flow * np.array([width / flow.shape[2], height / flow.shape[1]])[:, None, None]
        largest = float(np.nanmax(np.hypot(*in_image))) if flow.size else 0.0
        ax = axes[row, 0]
        ax.imshow(flow_to_color(in_image, saturation), extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        ax.set_ylabel(level, fontsize=12)
        ax.set_title(f"colour ({flow.shape[1]}x{flow.shape[2]} grid, max {largest:.3g} image px)", fontsize=9)
        if row == 0:
            _inset_wheel(ax)
        ax = axes[row, 1]
        ax.imshow(rgb, alpha=0.8)
        # scale: data units per arrow unit; vectors are in image pixels, so 1 / magnification draws them x magnification
        draw_quiver(ax, flow, step=step, arrows_across=arrows_across, image_shape=(height, width), scale=1.0 / magnification)
        ax.set_title(f"arrows x{magnification:.3g} (same for every level)", fontsize=9)
    figure.suptitle(title or f"semantic flow: hue = direction, saturation = magnitude (full at {saturation:.3g} image px)",
                    fontsize=11)
    return figure


def _class_legend(figure: Figure, maps: Sequence[np.ndarray], labels: LabelSpec) -> None:
    """A legend of the classes of `labels` present in `maps` (train ids), below the panels."""
    present = sorted(set(np.unique(np.concatenate([m.ravel() for m in maps]))) - {IGNORE_TRAIN_ID})
    colors = labels.class_colors[np.asarray(present, dtype=np.int64)] / 255.0
    handles = [Patch(color=tuple(c), label=labels.classes[t]) for t, c in zip(present, colors)]
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 7), fontsize=8, frameon=False)


def prediction_figure(
    image: Any,
    predictions: Mapping[str, Any],
    ground_truth: Any | None = None,
    *,
    scores: Mapping[str, float] | None = None,
    legend: bool = True,
    labels: LabelSpec = CITYSCAPES,
) -> Figure:
    """The image, the ground truth (if given) and each model's prediction side by side in the colours of
    `labels`; `scores` (e.g. per-image mIoU, as FPT Fig. 5 prints on each image) go into the titles."""
    rgb = as_rgb_image(image)
    maps = {name: as_label_map(p, f"prediction {name!r}", labels) for name, p in predictions.items()}
    panels: list[tuple[str, np.ndarray]] = [("image", rgb)]
    if ground_truth is not None:
        gt = as_label_map(ground_truth, "ground truth", labels)
        panels.append(("ground truth", colorize(gt, labels)))
    for name, label_map in maps.items():
        score = f" (mIoU {100 * scores[name]:.1f})" if scores and name in scores else ""
        panels.append((f"{name}{score}", colorize(label_map, labels)))
    for name, picture in panels:
        if picture.shape[:2] != rgb.shape[:2]:
            raise ValueError(f"{name}: size {picture.shape[:2]} differs from the image {rgb.shape[:2]}")
    figure, axes = _figure(1, len(panels), rgb.shape[0] / rgb.shape[1])
    for ax, (name, picture) in zip(axes[0], panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name, fontsize=9)
    if legend:
        _class_legend(figure, list(maps.values()) + ([gt] if ground_truth is not None else []), labels)
    return figure


def error_figure(
    image: Any,
    predictions: Mapping[str, Any],
    ground_truth: Any,
    *,
    ignore_color: Sequence[int] = (0, 0, 0),
    legend: bool = True,
    labels: LabelSpec = CITYSCAPES,
) -> Figure:
    """Error maps of several models (SFNet Fig. 6(a)): black where right, the ground-truth colour where
    wrong (ignored pixels in `ignore_color`, see `error_map`); titles give the share of evaluated pixels
    predicted wrong."""
    rgb = as_rgb_image(image)
    gt = as_label_map(ground_truth, "ground truth", labels)
    if gt.shape != rgb.shape[:2]:
        raise ValueError(f"ground truth {gt.shape} and image {rgb.shape[:2]} differ in size")
    evaluated = max(int((gt != IGNORE_TRAIN_ID).sum()), 1)
    panels, wrong_classes = [], []
    for name, prediction in predictions.items():
        pred = as_label_map(prediction, f"prediction {name!r}", labels)
        errors = error_map(pred, gt, ignore_color, labels)  # also checks the size
        wrong = (pred != gt) & (gt != IGNORE_TRAIN_ID)
        panels.append((f"{name}: {100 * wrong.sum() / evaluated:.1f}% wrong", errors))
        wrong_classes.append(np.where(wrong, gt, IGNORE_TRAIN_ID))
    figure, axes = _figure(1, 1 + len(panels), rgb.shape[0] / rgb.shape[1])
    axes[0, 0].imshow(rgb)
    axes[0, 0].set_title("image", fontsize=9)
    for ax, (name, errors) in zip(axes[0, 1:], panels):
        ax.imshow(errors, interpolation="nearest")
        ax.set_title(name, fontsize=9)
    if legend:
        _class_legend(figure, wrong_classes, labels)
    return figure


def band_figure(image: Any, ground_truth: Any, bands: Sequence[int] = DEFAULT_BANDS, *, alpha: float = 0.6,
                labels: LabelSpec = CITYSCAPES, reference_size: tuple[int, int] | None = None) -> Figure:
    """Boundary bands over the image: all bands nested in one panel (legend by width), then each band alone, titled
    with the width it has on this image (scaled from `reference_size`, see `boundary_bands`) and its share of the
    pixels."""
    rgb = as_rgb_image(image)
    widths = validate_bands(bands)
    palette = band_colors(len(widths))
    nested = band_overlay(rgb, ground_truth, widths, alpha=alpha, colors=palette, labels=labels,
                          reference_size=reference_size)  # also checks the sizes
    levels = boundary_bands(ground_truth, widths, labels=labels, reference_size=reference_size)
    used = scaled_widths(widths, levels.shape, reference_size)
    figure, axes = _figure(1, 1 + len(widths), rgb.shape[0] / rgb.shape[1])
    axes[0, 0].imshow(nested)
    axes[0, 0].set_title("nested bands", fontsize=9)
    total = max(levels.size, 1)
    for j, (ax, width) in enumerate(zip(axes[0, 1:], widths)):
        # band `width` alone: every pixel of this band or a narrower one, in this band's colour
        ax.imshow(_single_band(rgb, levels, j, palette[j], alpha))
        scaled = f"{used[j]} px on this map, " if used[j] != width else ""
        ax.set_title(f"{width} px band ({scaled}{100 * (levels <= j).sum() / total:.0f}% of pixels)", fontsize=9)
    handles = [Patch(color=tuple(c / 255.0), label=f"{w} px") for w, c in zip(widths, palette)]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    return figure


def _single_band(rgb: np.ndarray, levels: np.ndarray, index: int, color: np.ndarray, alpha: float) -> np.ndarray:
    """The image with the pixels of band `index` (levels <= index) blended in one colour."""
    out = rgb.astype(np.float64)
    inside = levels <= index
    out[inside] = (1.0 - alpha) * out[inside] + alpha * color.astype(np.float64)
    return (out + 0.5).astype(np.uint8)


def comparison_bars(
    values: Mapping[str, Mapping[Any, float]],
    *,
    title: str = "",
    ylabel: str = "",
    percent: bool = True,
    delta: bool | None = None,
    keys: Sequence[Any] | None = None,
) -> Figure:
    """Grouped bars: one group per key, one bar per series (e.g. {model: {class: IoU}}).

    Missing or NaN values leave a gap. With exactly two series (and `delta` not False) a lower panel shows
    second minus first per key, green where the second is better. `percent` multiplies by 100.
    """
    series = list(values)
    if not series:
        raise ValueError("values: give at least one series")
    keys = list(keys) if keys is not None else list(dict.fromkeys(k for name in series for k in values[name]))
    factor = 100.0 if percent else 1.0
    table = np.array([[float(values[name].get(k, np.nan)) * factor for k in keys] for name in series], dtype=np.float64)
    show_delta = len(series) == 2 if delta is None else (delta and len(series) == 2)
    width = max(5.0, 0.45 * len(keys) * max(len(series), 1) + 1.5)
    figure = Figure(figsize=(width, 4.8 if show_delta else 3.6), layout="constrained")
    if show_delta:
        ax, ax_delta = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1.4))
    else:
        ax, ax_delta = figure.subplots(1, 1), None
    positions = np.arange(len(keys), dtype=np.float64)
    bar_width = 0.8 / len(series)
    for i, name in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * bar_width
        ax.bar(positions + offset, np.nan_to_num(table[i]), bar_width, label=name)
        for x, value in zip(positions + offset, table[i]):
            if np.isnan(value):
                ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=6, rotation=90)
            elif len(keys) <= 8:
                ax.text(x, value, f"{value:.1f}" if percent else f"{value:.3g}", ha="center", va="bottom", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    labels = [str(k) for k in keys]
    target = ax_delta if ax_delta is not None else ax
    target.set_xticks(positions, labels, rotation=45 if len(keys) > 6 else 0, ha="right" if len(keys) > 6 else "center")
    if ax_delta is not None:
        difference = table[1] - table[0]
        ax_delta.bar(positions, np.nan_to_num(difference), 0.6,
                     color=np.where(difference >= 0, "tab:green", "tab:red"))
        ax_delta.axhline(0.0, color="black", linewidth=0.8)
        ax_delta.set_ylabel(f"{series[1]} - {series[0]}", fontsize=8)
        ax_delta.grid(axis="y", alpha=0.3)
    return figure


def class_iou_figure(class_iou: Mapping[str, Mapping[str, float]], *, title: str = "per-class IoU",
                     labels: LabelSpec | None = None) -> Figure:
    """Per-class IoU of several models ({model: {class name: IoU}}), classes in the train-id order of `labels`
    (default: the order of the first model's classes)."""
    keys = list(labels.classes) if labels is not None else None
    return comparison_bars(class_iou, title=title, ylabel="IoU (%)", keys=keys)


def band_miou_figure(
    band_miou: Mapping[str, Mapping[Any, float]],
    miou: Mapping[str, float] | None = None,
    *,
    title: str = "boundary-band mIoU",
) -> Figure:
    """Boundary-band mIoU by band width ({model: {width: mIoU}}, widths as ints or strings such as "3"),
    with the whole-image mIoU as a last group when `miou` is given (FaPN Table 2 as bars)."""
    values: dict[str, dict[str, float]] = {}
    for name, by_width in band_miou.items():
        row = {f"{int(width)} px": value for width, value in sorted(by_width.items(), key=lambda item: int(item[0]))}
        if miou is not None and name in miou:
            row["all pixels"] = miou[name]
        values[name] = row
    return comparison_bars(values, title=title, ylabel="mIoU (%)")


def confusion_figure(confusion: Any, class_names: Sequence[str], *, title: str = "confusion matrix", normalize_rows: bool = True) -> Figure:
    """A (K, K) confusion matrix (ground truth rows, predictions columns, counts) as a heat map; rows are
    normalised to fractions of each ground-truth class (recall per cell) unless `normalize_rows` is False.
    Rows of classes absent from the ground truth stay zero."""
    matrix = np.asarray(confusion, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(class_names):
        raise ValueError(f"confusion: expected a ({len(class_names)}, {len(class_names)}) matrix, got shape {matrix.shape}")
    if normalize_rows:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    size = 2.5 + 0.3 * len(class_names)
    figure = Figure(figsize=(size, size * 0.9))
    ax = figure.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0 if normalize_rows else None)
    ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title, fontsize=9)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the class" if normalize_rows else "pixels")
    return figure
