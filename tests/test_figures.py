"""reports.figures on known inputs: flow colours, arrows, error maps, band overlays, figures, bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from alignbench_test_helpers import REPO_ROOT
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.quiver import Quiver

from alignbench.metrics.boundary import band_levels, boundary_mask
from alignbench.metrics.labels import CITYSCAPES, IGNORE_TRAIN_ID
from alignbench.metrics.semantic import SemanticAccumulator
from alignbench.reports import figures

ROAD, SIDEWALK, PERSON, CAR = 0, 1, 11, 13  # train ids
ROAD_RGB, CAR_RGB, PERSON_RGB = (128, 64, 128), (0, 0, 142), (220, 20, 60)  # Cityscapes label colours


def constant_flow(x: float, y: float, height: int = 6, width: int = 10) -> np.ndarray:
    return np.stack([np.full((height, width), x), np.full((height, width), y)])


def two_class_map(height: int = 24, width: int = 32) -> np.ndarray:
    """Road on the left, a car on the right, an ignored strip along the top."""
    labels = np.full((height, width), ROAD, np.int64)
    labels[:, width // 2 :] = CAR
    labels[:3] = IGNORE_TRAIN_ID
    return labels


# --- the Middlebury colour code -------------------------------------------------------------------------


def test_colour_wheel_has_the_middlebury_transitions():
    wheel = figures.color_wheel()
    assert wheel.shape == (15 + 6 + 4 + 11 + 13 + 6, 3)
    # the first entry of each transition: red, yellow, green, cyan, blue, magenta
    starts = np.cumsum([0, 15, 6, 4, 11, 13])
    expected = [(1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 1, 1), (0, 0, 1), (1, 0, 1)]
    np.testing.assert_array_equal(wheel[starts], expected)
    assert wheel[1, 1] == np.floor(255 / 15) / 255  # red -> yellow: green ramps up in 15 steps


@pytest.mark.parametrize("to_tensor", [False, True])
def test_a_constant_rightward_flow_is_the_wheels_red(to_tensor):
    flow = constant_flow(3.0, 0.0)
    colours = figures.flow_to_color(torch.from_numpy(flow)[None] if to_tensor else flow)
    assert colours.shape == (6, 10, 3) and colours.dtype == np.uint8
    # angle atan2(-0, -3) = -pi: wheel entry 0, full saturation (the flow's own largest magnitude)
    assert np.all(colours == (255, 0, 0))


@pytest.mark.parametrize(
    "direction, colour",
    [
        ((-1.0, 0.0), (0, 209, 255)),  # left: wheel position 27 (cyan -> blue, step 2 of 11)
        ((0.0, 1.0), (255, 230, 0)),  # down (image rows): between entries 13 and 14 (red -> yellow)
        ((0.0, -1.0), (88, 0, 255)),  # up: between entries 40 and 41 (blue -> magenta)
    ],
)
def test_each_direction_takes_its_wheel_hue(direction, colour):
    colours = figures.flow_to_color(constant_flow(*direction))
    np.testing.assert_array_equal(colours[0, 0], colour)


def test_saturation_grows_with_magnitude_and_zero_flow_is_white():
    flow = np.zeros((2, 1, 4))
    flow[0] = [0.0, 1.0, 2.0, 4.0]  # rightward, growing; normalised by max_magnitude 2
    colours = figures.flow_to_color(flow, max_magnitude=2.0)
    np.testing.assert_array_equal(colours[0, 0], (255, 255, 255))  # no motion
    np.testing.assert_array_equal(colours[0, 1], (255, 128, 128))  # half way from white to red
    np.testing.assert_array_equal(colours[0, 2], (255, 0, 0))  # the normalising magnitude: full red
    np.testing.assert_array_equal(colours[0, 3], (191, 0, 0))  # beyond it: darkened to 75 %


def test_non_finite_vectors_are_black():
    flow = constant_flow(1.0, 1.0)
    flow[0, 2, 3] = np.nan
    colours = figures.flow_to_color(flow)
    np.testing.assert_array_equal(colours[2, 3], (0, 0, 0))
    others = np.ones((6, 10), bool)
    others[2, 3] = False
    assert np.all(colours[others] == figures.flow_to_color(constant_flow(1.0, 1.0))[0, 0])


def test_colour_wheel_legend_shows_the_colour_of_each_direction():
    figure = Figure()
    image = figures.draw_color_wheel(figure.subplots(), size=101)
    rgba = image.get_array()
    assert image.get_extent() == [-1, 1, 1, -1]  # row 0 is y = -1: up on screen, as in an image
    np.testing.assert_array_equal(rgba[50, 100, :3], (255, 0, 0))  # the right rim: a unit rightward vector
    np.testing.assert_array_equal(rgba[50, 50, :3], (255, 255, 255))  # centre: no motion
    assert rgba[0, 0, 3] == 0 and rgba[50, 99, 3] == 255  # transparent outside the disc
    left = figures.flow_to_color(constant_flow(-1.0, 0.0, 1, 1), max_magnitude=1.0)[0, 0]
    assert np.abs(rgba[50, 1, :3].astype(int) - left).max() <= 13  # near the left rim: the leftward colour


# --- arrows ---------------------------------------------------------------------------------------------


def test_quiver_of_a_known_flow_points_the_right_way_on_screen():
    figure = Figure(figsize=(4, 3))
    ax = figure.subplots()
    flow = constant_flow(2.0, -1.0, height=8, width=16)  # right and up (negative rows)
    quiver = figures.draw_quiver(ax, flow, step=4)
    assert isinstance(quiver, Quiver)
    np.testing.assert_array_equal(quiver.U, 2.0)
    np.testing.assert_array_equal(quiver.V, -1.0)
    # one arrow per 4x4 cell, at the cell's centre pixel (rows 2, 6; columns 2, 6, 10, 14)
    np.testing.assert_array_equal(np.unique(quiver.X), [2, 6, 10, 14])
    np.testing.assert_array_equal(np.unique(quiver.Y), [2, 6])
    assert quiver.angles == "xy" and ax.yaxis_inverted()
    # on screen (display coordinates, y up) the arrow from a pixel goes right and up
    tail, head = ax.transData.transform([(2.0, 6.0), (2.0 + 2.0, 6.0 - 1.0)])
    assert head[0] > tail[0] and head[1] > tail[1]
    # default scale: the longest arrow spans 0.9 of the grid step
    assert quiver.scale == pytest.approx(np.hypot(2.0, 1.0) / (0.9 * 4))


def test_quiver_over_a_larger_image_scales_positions_and_vectors():
    figure = Figure()
    ax = figure.subplots()
    flow = constant_flow(1.0, 0.5, height=8, width=16)
    quiver = figures.draw_quiver(ax, flow, step=8, image_shape=(32, 64))  # 4x the flow's grid
    np.testing.assert_array_equal(quiver.U, 4.0)
    np.testing.assert_array_equal(quiver.V, 2.0)
    # cell centres (columns 4 and 12 of the flow) in image pixels: (4 + 0.5) * 4 - 0.5, (12 + 0.5) * 4 - 0.5
    np.testing.assert_array_equal(np.unique(quiver.X), [17.5, 49.5])
    assert ax.get_xlim() == (-0.5, 63.5) and ax.get_ylim() == (31.5, -0.5)


# --- flows from the models' units ----------------------------------------------------------------------


def test_sfnet_flow_in_pixels_is_the_displacement_of_flow_warp():
    from alignbench.models.ops.flow import flow_warp

    height, width = 9, 17
    ramp = torch.arange(width, dtype=torch.float64).expand(1, 1, height, width).contiguous()  # value = column
    rows = torch.arange(height, dtype=torch.float64)[:, None].expand(1, 1, height, width).contiguous()
    flow = torch.zeros(1, 2, height, width, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = 1.5, -0.8
    shift_x, shift_y = figures.grid_sample_flow_to_pixels(flow)
    # bilinear sampling of a linear ramp is exact: inside the map, warped value - own column = displacement
    inside = (slice(2, -2), slice(2, -2))
    moved_x = (flow_warp(ramp, flow) - ramp)[0, 0][inside].numpy()
    moved_y = (flow_warp(rows, flow) - rows)[0, 0][inside].numpy()
    np.testing.assert_allclose(moved_x, shift_x[inside], atol=1e-9)
    np.testing.assert_allclose(moved_y, shift_y[inside], atol=1e-9)
    assert shift_x[0, 0] == pytest.approx(1.5 * 16 / 34)


def test_mean_offset_reads_torchvision_layout_and_weights_by_masks():
    # two sampling points: (dy, dx) = (1, -2) and (3, 2); torchvision interleaves (dy, dx) per point
    offset = np.zeros((4, 2, 3))
    offset[0], offset[1], offset[2], offset[3] = 1.0, -2.0, 3.0, 2.0
    flow = figures.mean_offset(offset)
    np.testing.assert_allclose(flow[0], 0.0)  # x: mean of -2 and 2
    np.testing.assert_allclose(flow[1], 2.0)  # y: mean of 1 and 3
    masks = np.stack([np.full((2, 3), 3.0), np.full((2, 3), 1.0)])
    weighted = figures.mean_offset(torch.from_numpy(offset)[None], torch.from_numpy(masks)[None])
    np.testing.assert_allclose(weighted[0], (3 * -2 + 2) / 4)
    np.testing.assert_allclose(weighted[1], (3 * 1 + 3) / 4)


# --- error maps, colours, bands ----------------------------------------------------------------------------


def test_error_map_of_a_perfect_prediction_is_all_black():
    gt = two_class_map()
    errors = figures.error_map(gt.copy(), gt)
    assert errors.shape == gt.shape + (3,) and errors.dtype == np.uint8
    assert not errors.any()


def test_wrong_pixels_carry_the_ground_truth_colour_and_ignored_pixels_are_no_errors():
    gt = two_class_map()
    prediction = gt.copy()
    prediction[10, 2] = PERSON  # wrong on road
    prediction[12, 20] = ROAD  # wrong on car
    prediction[0, :] = CAR  # on ignored ground truth: not scored
    errors = figures.error_map(prediction, gt)
    np.testing.assert_array_equal(errors[10, 2], ROAD_RGB)
    np.testing.assert_array_equal(errors[12, 20], CAR_RGB)
    wrong = np.zeros(gt.shape, bool)
    wrong[10, 2] = wrong[12, 20] = True
    assert not errors[~wrong].any()
    grey = figures.error_map(prediction, gt, ignore_color=(128, 128, 128))
    assert np.all(grey[:3] == 128) and np.array_equal(grey[3:], errors[3:])


def test_colorize_uses_the_cityscapes_colours():
    colours = figures.colorize(np.array([[ROAD, CAR], [PERSON, IGNORE_TRAIN_ID]]))
    np.testing.assert_array_equal(colours, [[ROAD_RGB, CAR_RGB], [PERSON_RGB, (0, 0, 0)]])


def test_band_overlay_keeps_the_image_size_and_changes_only_band_pixels():
    gt = two_class_map(40, 60)
    image = np.full((40, 60, 3), 100, np.uint8)
    overlay = figures.band_overlay(image, gt, (3, 5))
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    levels = figures.boundary_bands(gt, (3, 5))
    assert np.array_equal(overlay[levels == 2], image[levels == 2])  # outside every band: untouched
    palette = figures.band_colors(2)
    expected = np.round(0.4 * 100 + 0.6 * palette[0].astype(float))
    np.testing.assert_array_equal(overlay[20, 29], expected)  # a boundary pixel: the narrowest band's colour
    assert levels[20, 29] == 0 and levels[20, 25] == 1 and levels[20, 20] == 2  # 0, 4 and 9 px from it


def test_overlays_accept_channel_first_float_images_of_the_same_size():
    gt = two_class_map(20, 30)
    image = torch.rand(3, 20, 30)
    assert figures.band_overlay(image, gt).shape == (20, 30, 3)
    assert figures.as_rgb_image(image).shape == (20, 30, 3)
    np.testing.assert_array_equal(figures.as_rgb_image(np.ones((2, 2, 3))), np.full((2, 2, 3), 255))


def test_band_levels_agree_with_the_boundary_band_metric(small_tree):
    from alignbench.bench.data.cityscapes import find_frames, read_frame

    bands = (3, 5, 8, 12)
    for frame in find_frames(small_tree, "val")[:2]:
        sample = read_frame(frame, with_image=False)
        levels = figures.boundary_bands(sample.train_ids, bands)
        # metrics.boundary on label ids: the definition the metric uses, ignored pixels in no band
        boundary = boundary_mask(sample.label_ids, CITYSCAPES.evaluated)
        reference = band_levels(boundary, bands)
        reference[~CITYSCAPES.evaluated[sample.label_ids]] = len(bands)
        np.testing.assert_array_equal(levels, reference)
        # and the accumulator counts exactly these pixels in each band
        accumulator = SemanticAccumulator(bands=bands, pred_ids="label")
        accumulator.update(sample.label_ids, sample.label_ids)
        for index in range(len(bands)):
            assert accumulator.band_confusion[index].sum() == (levels <= index).sum()


def test_band_order_does_not_matter():
    gt = two_class_map()
    np.testing.assert_array_equal(figures.boundary_bands(gt, (5, 3)), figures.boundary_bands(gt, (3, 5)))


# --- figures --------------------------------------------------------------------------------------------


def _images(figure: Figure) -> list[AxesImage]:
    return [image for ax in figure.axes for image in ax.get_images()]


def test_alignment_figure_shows_each_level_beside_the_image_stretched_to_its_size():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    before = {"p2": torch.rand(1, 4, 8, 16), "p3": torch.rand(1, 4, 4, 8)}
    after = {"p2": torch.rand(4, 8, 16), "p3": torch.rand(4, 4, 8)}
    flows = {"p2": rng.normal(size=(2, 8, 16)), "p3": rng.normal(size=(2, 4, 8))}
    figure = figures.alignment_figure(image, {"before": before, "after": after}, flows=flows)
    grid = [ax for ax in figure.axes if ax.get_subplotspec() is not None]
    assert len(grid) == 2 * 4  # rows: levels; columns: image, before, after, flow
    assert [ax.get_ylabel() for ax in grid[::4]] == ["p2", "p3"]
    heat = grid[1].get_images()[0]
    assert heat.get_extent() == [-0.5, 63.5, 31.5, -0.5]  # an 8x16 map over the 32x64 image
    np.testing.assert_allclose(heat.get_array(), figures.normalize(before["p2"][0].mean(0).numpy()), rtol=1e-6)
    assert len(grid[3].child_axes) == 1 and grid[3].child_axes[0].get_images()  # the colour-wheel legend


def test_flow_figure_has_colours_and_arrows_per_level():
    image = np.zeros((16, 32, 3), np.uint8)
    # both move 2 image px (p2: 1 px of its 8x16 grid, p3: 0.5 px of its 4x8 grid): both fully saturated
    figure = figures.flow_figure(image, {"p2": constant_flow(1.0, 0.0, 8, 16), "p3": constant_flow(0.0, 0.5, 4, 8)})
    quivers = [c for ax in figure.axes for c in ax.collections if isinstance(c, Quiver)]
    assert len(quivers) == 2 and np.all(quivers[1].V > 0) and np.all(quivers[1].U == 0)
    colours = [ax.get_images()[0].get_array() for ax in figure.axes[:4:2]]
    assert np.all(colours[0][..., :3] == (255, 0, 0))


def test_prediction_and_error_figures_show_one_panel_per_model():
    gt = two_class_map()
    image = np.zeros(gt.shape + (3,), np.uint8)
    prediction = gt.copy()
    prediction[10:12] = SIDEWALK
    figure = figures.prediction_figure(image, {"fpn": prediction, "fapn": gt}, gt, scores={"fpn": 0.5})
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["image", "ground truth", "fpn (mIoU 50.0)", "fapn"]
    figure = figures.error_figure(image, {"fpn": prediction, "fapn": gt}, gt)
    panels = _images(figure)
    np.testing.assert_array_equal(panels[1].get_array(), figures.error_map(prediction, gt))
    assert not np.asarray(panels[2].get_array()).any()
    assert figure.axes[2].get_title() == "fapn: 0.0% wrong"


def test_band_figure_has_the_nested_bands_and_one_panel_per_width():
    gt = two_class_map()
    figure = figures.band_figure(np.zeros(gt.shape + (3,), np.uint8), gt, (3, 8))
    assert [ax.get_title().split(" (")[0] for ax in figure.axes] == ["nested bands", "3 px band", "8 px band"]
    assert all(image.get_array().shape == gt.shape + (3,) for image in _images(figure))


def test_bar_charts_plot_the_values_in_percent_in_train_id_order():
    # without a label table the classes keep the order they come in
    unordered = figures.class_iou_figure({"fpn": {"sky": 0.5, "road": 0.25}, "fapn": {"road": 0.75}})
    assert [label.get_text() for label in unordered.axes[1].get_xticklabels()] == ["sky", "road"]
    figure = figures.class_iou_figure({"fpn": {"sky": 0.5, "road": 0.25}, "fapn": {"road": 0.75}}, labels=CITYSCAPES)
    bars, delta = figure.axes
    heights = [patch.get_height() for patch in bars.patches]
    assert heights[:2] == [25.0, 0.0]  # fpn: road, sidewalk (missing: no bar), ...
    assert heights[10] == 50.0 and heights[19] == 75.0  # fpn sky; fapn road
    assert delta.patches[0].get_height() == 50.0  # fapn - fpn on road
    labels = [label.get_text() for label in delta.get_xticklabels()]
    assert labels[:3] == ["road", "sidewalk", "building"]
    figure = figures.band_miou_figure({"a": {"12": 0.3, "3": 0.1}}, miou={"a": 0.5})
    assert [label.get_text() for label in figure.axes[0].get_xticklabels()] == ["3 px", "12 px", "all pixels"]


def test_figures_module_does_not_use_pyplot():
    code = "import sys, reports.figures; sys.exit('matplotlib.pyplot' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: figures.flow_to_color(np.zeros((3, 4, 4))), "flow: expected 2 channels"),
        (lambda: figures.flow_to_color(np.zeros((2, 2, 4, 4))), r"flow: expected 3 dimensions \(or a batch of one\)"),
        (lambda: figures.as_rgb_image(np.zeros((4, 4, 2))), "image: expected 3 colour channels"),
        (lambda: figures.colorize(np.array([[0, 19]])), "train ids must be 0..18 or 255, found 19"),
        (lambda: figures.error_map(np.zeros((4, 4)), np.zeros((4, 5))), r"prediction \(4, 4\) and ground truth \(4, 5\) differ"),
        (lambda: figures.band_overlay(np.zeros((4, 4, 3)), np.zeros((4, 5))), "image .* and ground truth .* differ in size"),
        (lambda: figures.band_overlay(np.zeros((4, 4, 3)), np.zeros((4, 4)), colors=np.zeros((2, 3))),
         r"colors: expected one RGB row per band \(4, 3\)"),
        (lambda: figures.mean_offset(np.zeros((3, 2, 2))), "offset: expected an even number of channels"),
        (lambda: figures.feature_heatmap(np.zeros((4, 2, 2)), channel=4), "channel 4 outside a feature of 4 channels"),
        (lambda: figures.prediction_figure(np.zeros((4, 4, 3)), {"m": np.zeros((4, 5))}), r"m: size \(4, 5\) differs from the image \(4, 4\)"),
        (lambda: figures.error_figure(np.zeros((4, 4, 3)), {"m": np.zeros((5, 4))}, np.zeros((5, 4))), "ground truth .* and image .* differ"),
        (lambda: figures.alignment_figure(np.zeros((4, 4, 3)), {"a": {"p2": np.zeros((1, 2, 2))}, "b": {}}),
         r"columns\['b'\]: no feature map for level\(s\) p2"),
        (lambda: figures.alignment_figure(np.zeros((4, 4, 3)), {"a": {"p2": np.zeros((1, 2, 2))}}, flows={"p3": np.zeros((2, 2, 2))}),
         r"flows: no flow for level\(s\) p2"),
        (lambda: figures.flow_figure(np.zeros((4, 4, 3)), {}), "flows: give at least one"),
        (lambda: figures.comparison_bars({}), "values: give at least one series"),
    ],
)
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_every_heat_map_has_a_colour_bar_in_the_maps_units():
    image = np.zeros((32, 64, 3), np.uint8)
    before = {"p2": torch.full((4, 8, 16), 2.0), "p3": torch.rand(4, 4, 8)}
    before["p2"][:, 0, 0] = 4.0
    figure = figures.alignment_figure(image, {"before": before})
    bars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 2  # one per heat map (two levels, one column)
    assert [t.get_text() for t in bars[0].get_yticklabels()] == ["2", "3", "4"]


def test_flows_of_all_levels_share_one_stated_scale():
    image = np.zeros((16, 32, 3), np.uint8)
    # p2 (stride 2) moves 1 grid px = 2 image px; p3 (stride 4) 0.25 grid px = 1 image px
    figure = figures.flow_figure(image, {"p2": constant_flow(1.0, 0.0, 8, 16), "p3": constant_flow(0.25, 0.0, 4, 8)})
    quivers = [c for ax in figure.axes for c in ax.collections if isinstance(c, Quiver)]
    assert quivers[0].scale == quivers[1].scale  # no per-level rescaling
    np.testing.assert_allclose(quivers[0].U, 2.0) and np.testing.assert_allclose(quivers[1].U, 1.0)
    titles = [ax.get_title() for ax in figure.axes]
    assert "max 2 image px" in titles[0] and "max 1 image px" in titles[2]
    assert titles[1] == titles[3] and titles[1].startswith("arrows x")
