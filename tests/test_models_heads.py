"""Semantic-FPN head, PointRend semantic head (point selection, subdivision), real-time prediction layer."""

import pytest
import torch
import torch.nn.functional as F

from alignbench.models.heads import ConvPredictionHead, PointHead, PointRendSemanticHead, SemanticFPNHead
from alignbench.models.heads.pointrend import most_uncertain_grid_points, point_sample, sample_uncertain_points, uncertainty

STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32}


def pyramid(channels=32, height=64, width=96, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(batch, channels, height // stride, width // stride, generator=generator)
        for name, stride in STRIDES.items()
    }


def test_semantic_fpn_head_structure_and_output():
    head = SemanticFPNHead(32, STRIDES, 19, channels=32)
    convs = {name: sum(isinstance(m, torch.nn.Conv2d) for m in head.scale_heads[name]) for name in STRIDES}
    assert convs == {"p2": 1, "p3": 1, "p4": 2, "p5": 3}  # max(1, log2(stride / 4))
    assert all(isinstance(m, torch.nn.GroupNorm) and m.num_groups == 32 for m in head.scale_heads["p5"] if
               isinstance(m, torch.nn.GroupNorm))
    assert head.scale_heads["p2"][0].bias is None
    logits = head(pyramid())
    assert logits.shape == (2, 19, 16, 24)
    # full-width head parameters (detectron2 defaults, 256-channel pyramid): 7 convs + GN + predictor
    full = SemanticFPNHead(256, STRIDES, 19)
    assert sum(p.numel() for p in full.parameters()) == 4 * 294912 + 3 * 147456 + 7 * 256 + 128 * 19 + 19


def test_semantic_fpn_loss_ignores_255():
    torch.manual_seed(1)
    head = SemanticFPNHead(32, STRIDES, 5, channels=32)
    feats = pyramid()
    targets = torch.randint(0, 5, (2, 64, 96))
    logits = F.interpolate(head(feats), size=(64, 96), mode="bilinear", align_corners=False)
    ignored = targets.clone()
    ignored[:, :10] = 255
    loss = head.losses(feats, ignored)["loss_sem_seg"]
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[:, 10:].reshape(-1, 5), targets[:, 10:].reshape(-1))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    all_ignored = head.losses(feats, torch.full((2, 64, 96), 255))["loss_sem_seg"]
    assert all_ignored.item() == 0.0 and all_ignored.requires_grad


def test_uncertainty_is_second_minus_first_logit():
    logits = torch.tensor([[[3.0], [1.0], [2.5]]])  # (1, 3, 1)
    torch.testing.assert_close(uncertainty(logits), torch.tensor([[[-0.5]]]))


def test_training_point_selection_mixes_uncertain_and_random_points():
    torch.manual_seed(2)
    # confident everywhere except a vertical band x in [0.375, 0.625] (about 1/3 of the 600 candidates)
    coarse = torch.zeros(1, 3, 32, 32)
    coarse[:, 0] = 10.0
    coarse[:, 0, :, 12:20] = 0.0
    points = sample_uncertain_points(coarse, 200, 3.0, 0.75)
    assert points.shape == (1, 200, 2)
    assert points.min() >= 0 and points.max() <= 1
    in_band = ((points[0, :, 0] > 0.33) & (points[0, :, 0] < 0.67)).float()
    assert in_band[:150].mean() == 1.0  # the beta * N importance-sampled points
    assert in_band[150:].mean() < 0.7  # the (1 - beta) * N uniform points (about 1/3 expected)


def test_grid_points_are_cell_centres():
    uncertainty_map = torch.zeros(1, 1, 4, 8)
    uncertainty_map[0, 0, 2, 5] = 1.0
    index, coords = most_uncertain_grid_points(uncertainty_map, 1)
    assert index.item() == 2 * 8 + 5
    torch.testing.assert_close(coords, torch.tensor([[[5.5 / 8, 2.5 / 4]]]))
    # sampling a map at the centre of a cell returns that cell's value
    values = torch.arange(32.0).view(1, 1, 4, 8)
    assert point_sample(values, coords).item() == 21.0


@pytest.mark.parametrize("each_layer, fc1_in, predictor_in", [(False, 32 + 19, 256), (True, 32 + 19, 256 + 19)])
def test_point_head_widths(each_layer, fc1_in, predictor_in):
    head = PointHead(32, 19, coarse_pred_each_layer=each_layer)
    assert len(head.fc_layers) == 3 and head.fc_layers[0].in_channels == fc1_in
    assert head.predictor.in_channels == predictor_in
    assert head(torch.randn(2, 32, 7), torch.randn(2, 19, 7)).shape == (2, 19, 7)


def test_pointrend_defaults_are_the_cityscapes_config():
    head = PointRendSemanticHead(256, STRIDES, 19)
    assert head.train_num_points == 2048 and head.subdivision_steps == 2 and head.subdivision_num_points == 8192
    assert head.oversample_ratio == 3 and head.importance_sample_ratio == 0.75
    assert head.point_features == ("p2",) and not head.point_head.coarse_pred_each_layer
    assert head.coarse_head.scale_heads["p2"][0].out_channels == 128


def test_pointrend_subdivision_refines_only_uncertain_points():
    torch.manual_seed(3)
    head = PointRendSemanticHead(32, STRIDES, 5, channels=32, subdivision_num_points=100).eval()
    feats = pyramid()
    with torch.no_grad():
        coarse = head.coarse_head(feats)
        refined = head(feats)
        assert refined.shape == (2, 5, 64, 96)  # stride 4 / 2**2 = 1
        # after the last step at most 100 cells per image differ from the upsampled previous estimate
        head.subdivision_steps = 1
        step1 = head(feats)
        upsampled = F.interpolate(step1, scale_factor=2, mode="bilinear", align_corners=False)
        changed = (refined != upsampled).any(dim=1).flatten(1).sum(dim=1)
        assert changed.max() <= 100 and changed.min() > 0
        head.subdivision_steps = 0
        torch.testing.assert_close(head(feats), coarse)


def test_pointrend_losses():
    torch.manual_seed(4)
    head = PointRendSemanticHead(32, STRIDES, 5, channels=32, train_num_points=64)
    feats = pyramid()
    targets = torch.randint(0, 5, (2, 64, 96))
    losses = head.losses(feats, targets)
    assert set(losses) == {"loss_sem_seg", "loss_sem_seg_point"}
    assert all(loss.dim() == 0 and torch.isfinite(loss) for loss in losses.values())
    # with an all-uncertain point head at init the point loss is close to log(5)
    assert abs(losses["loss_sem_seg_point"].item() - torch.log(torch.tensor(5.0)).item()) < 0.2
    ignored = head.losses(feats, torch.full((2, 64, 96), 255))
    assert all(loss.item() == 0.0 for loss in ignored.values())


def test_point_targets_use_nearest_labels():
    """A constant-label image gives that label at every sampled point (no interpolation of ids)."""
    torch.manual_seed(5)
    head = PointRendSemanticHead(32, STRIDES, 5, channels=32, train_num_points=64)
    feats = pyramid()
    seen = {}
    original = F.cross_entropy

    def spy(logits, targets, **kwargs):
        seen.setdefault("targets", []).append(targets)
        return original(logits, targets, **kwargs)

    try:
        F.cross_entropy = spy
        head.losses(feats, torch.full((2, 64, 96), 3))
    finally:
        F.cross_entropy = original
    assert torch.all(seen["targets"][-1] == 3) and seen["targets"][-1].shape == (2, 64)


def test_conv_prediction_head():
    head = ConvPredictionHead(16, 19, channels=16)
    feats = {"p3": torch.randn(2, 16, 8, 12)}
    assert head(feats).shape == (2, 19, 8, 12)
    assert isinstance(head.norm, torch.nn.BatchNorm2d) and head.conv.kernel_size == (3, 3)
    losses = head.losses(feats, torch.randint(0, 19, (2, 64, 96)))
    assert list(losses) == ["loss_sem_seg"] and losses["loss_sem_seg"].dim() == 0
