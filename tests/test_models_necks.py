"""FPN, FaPN (FSM / FAM and the Table 1 variants) and the real-time FaPN neck."""

import pytest
import torch
import torch.nn.functional as F

from alignbench.models.fapn import DeconvUpsample, FaPN, FeatureAlignment, FeatureSelection, PostFusionAlignment, RealTimeFaPN
from alignbench.models.fpn import FPN

SMALL = {"c2": 16, "c3": 24, "c4": 40, "c5": 64}


def features(height=16, width=24, channels=SMALL, batch=2, seed=0):
    """Backbone-like features of an input of (4 * height, 4 * width); odd sizes round up like a ResNet."""
    generator = torch.Generator().manual_seed(seed)
    out, h, w = {}, height, width
    for name, c in channels.items():
        out[name] = torch.randn(batch, c, h, w, generator=generator)
        h, w = (h + 1) // 2, (w + 1) // 2
    return out


def test_fsm_matches_its_formula():
    torch.manual_seed(0)
    fsm = FeatureSelection(12, 8)
    x = torch.randn(2, 12, 5, 7)
    u = torch.sigmoid(F.conv2d(x.mean(dim=(2, 3), keepdim=True), fsm.attention.weight))
    expected = F.conv2d(x + u * x, fsm.reduce.weight)
    torch.testing.assert_close(fsm(x), expected)
    assert fsm.attention.bias is None and fsm.reduce.bias is None
    se = FeatureSelection(12, 8, skip=False)
    u = torch.sigmoid(F.conv2d(x.mean(dim=(2, 3), keepdim=True), se.attention.weight))
    torch.testing.assert_close(se(x), F.conv2d(u * x, se.reduce.weight))


def test_fam_at_initialisation():
    """Offsets 0 and masks 0.5 at init: aligned = relu(DCN with half weights) of the bilinear upsampling."""
    torch.manual_seed(1)
    fam = FeatureAlignment(16, level="p3")
    coarse, reference = torch.randn(2, 16, 5, 6), torch.randn(2, 16, 10, 12)
    seen = {}
    fam.offset.register_forward_hook(lambda module, inputs, output: seen.update(offset_input=inputs[0]))
    aligned = fam(coarse, reference)
    upsampled = F.interpolate(coarse, size=(10, 12), mode="bilinear", align_corners=False)
    # the offset branch sees [reference, 2 * upsampled] (the factor 2 of the official code)
    torch.testing.assert_close(seen["offset_input"], torch.cat([reference, 2 * upsampled], dim=1))
    expected = F.relu(F.conv2d(upsampled, 0.5 * fam.dcn.weight, fam.dcn.bias, padding=1))
    torch.testing.assert_close(aligned, expected, rtol=1e-5, atol=1e-5)
    assert fam.offset.weight.shape == (16, 32, 1, 1) and fam.offset.bias is None
    assert fam.dcn.deformable_groups == 8 and fam.dcn.kernel_size == 3


def test_fam_learns_offsets_from_the_reference():
    torch.manual_seed(2)
    fam = FeatureAlignment(16, level="p2")
    coarse, reference = torch.randn(1, 16, 4, 4), torch.randn(1, 16, 8, 8)
    fam(coarse, reference).sum().backward()
    # at init the offset / mask conv is zero, yet it receives a gradient and so starts learning
    assert fam.dcn.conv_offset_mask.weight.grad.abs().sum() > 0
    with torch.no_grad():
        fam.dcn.conv_offset_mask.weight.normal_(std=0.01)
    reference = reference.requires_grad_()
    fam(coarse, reference).sum().backward()
    assert reference.grad.abs().sum() > 0  # the reference steers the sampling
    assert fam.offset.weight.grad.abs().sum() > 0


def test_nearest_fam_for_real_time():
    fam = FeatureAlignment(8, level="p4", upsample="nearest")
    seen = {}
    fam.dcn.register_forward_hook(lambda module, inputs, output: seen.update(x=inputs[0]))
    coarse = torch.randn(1, 8, 3, 3)
    fam(coarse, torch.randn(1, 8, 6, 6))
    torch.testing.assert_close(seen["x"], coarse.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))


def test_post_fusion_alignment_reads_the_fused_map():
    torch.manual_seed(3)
    module = PostFusionAlignment(16, level="p2")
    coarse, reference = torch.randn(1, 16, 4, 5), torch.randn(1, 16, 8, 10)
    fused = F.interpolate(coarse, size=(8, 10), mode="bilinear", align_corners=False) + reference
    expected = F.relu(F.conv2d(fused, 0.5 * module.dcn.weight, module.dcn.bias, padding=1))
    torch.testing.assert_close(module(coarse, reference), expected, rtol=1e-5, atol=1e-5)
    assert module.dcn.conv_offset_mask.in_channels == 16


def test_deconv_upsamples_exactly_and_crops_odd_sizes():
    deconv = DeconvUpsample(8)
    assert deconv(torch.randn(1, 8, 4, 5), (8, 10)).shape == (1, 8, 8, 10)
    assert deconv(torch.randn(1, 8, 4, 5), (7, 9)).shape == (1, 8, 7, 9)


def test_fpn_matches_a_hand_computation():
    torch.manual_seed(4)
    neck = FPN(SMALL, 8)
    feats = features(8, 8)
    out = neck(feats)
    p5 = neck.lateral["p5"](feats["c5"])
    p4 = neck.lateral["p4"](feats["c4"]) + F.interpolate(p5, scale_factor=2, mode="nearest")
    torch.testing.assert_close(out["p4"], neck.output["p4"](p4))
    torch.testing.assert_close(out["p5"], neck.output["p5"](p5))


@pytest.mark.parametrize(
    "make",
    [
        lambda: FPN(SMALL, 16),
        lambda: FPN(SMALL, 16, extra_output_convs=2),
        lambda: FaPN(SMALL, 16),
        lambda: FaPN(SMALL, 16, lateral="conv"),
        lambda: FaPN(SMALL, 16, lateral="se"),
        lambda: FaPN(SMALL, 16, align="deconv"),
        lambda: FaPN(SMALL, 16, align="fam_after_fusion"),
    ],
)
@pytest.mark.parametrize("size", [(16, 24), (13, 25)])
def test_neck_outputs(make, size):
    torch.manual_seed(5)
    neck = make()
    feats = features(*size)
    out = neck(feats)
    assert list(out) == ["p2", "p3", "p4", "p5"] and neck.out_channels == 16
    assert neck.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
    for level, name in zip(out, feats):
        assert out[level].shape == (2, 16, *feats[name].shape[-2:]), level


@pytest.mark.parametrize("neck_class", [FPN, FaPN])
def test_detection_top_block_adds_p6(neck_class):
    neck = neck_class(SMALL, 16, top_block=True)
    out = neck(features(16, 24))
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"] and neck.strides["p6"] == 64
    torch.testing.assert_close(out["p6"], out["p5"][..., ::2, ::2])


def test_fapn_layout_matches_the_official_code():
    neck = FaPN({"c2": 256, "c3": 512, "c4": 1024, "c5": 2048}, 256)
    assert set(neck.output) == {"p2", "p3", "p4"}  # no output conv on P5
    assert neck.top_lateral.kernel_size == (1, 1) and neck.top_lateral.bias is not None
    assert all(isinstance(neck.align[level], FeatureAlignment) for level in ("p2", "p3", "p4"))
    assert all(isinstance(neck.lateral[level], FeatureSelection) for level in ("p2", "p3", "p4"))
    assert [neck.align[level].level for level in ("p2", "p3", "p4")] == ["p2", "p3", "p4"]


def test_extra_conv_fpn_has_three_convs_per_output():
    neck = FPN(SMALL, 16, extra_output_convs=2)
    convs = [m for m in neck.output["p3"] if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 and all(c.kernel_size == (3, 3) for c in convs)


@pytest.mark.parametrize(
    "options",
    [
        {"lateral": "conv", "align": False, "fuse": "sum"},
        {"lateral": "conv", "align": True, "fuse": "sum"},
        {"lateral": "fsm", "align": True, "fuse": "sum"},
        {"lateral": "fsm", "align": True, "fuse": "concat"},
    ],
)
def test_real_time_neck(options):
    torch.manual_seed(6)
    channels = {"c2": 8, "c3": 16, "c4": 32, "c5": 64}
    neck = RealTimeFaPN(channels, 16, **options)
    feats = features(26, 34, channels)
    out = neck(feats)
    assert list(out) == ["p3", "p4", "p5"] and neck.out_channels == 16
    for level, name in zip(out, ("c3", "c4", "c5")):
        assert out[level].shape == (2, 16, *feats[name].shape[-2:])
    assert set(neck.align) == ({"p3", "p4"} if options["align"] else set())
    assert set(neck.merge) == ({"p3", "p4"} if options["fuse"] == "concat" else set())
    lateral_type = FeatureSelection if options["lateral"] == "fsm" else torch.nn.Conv2d
    assert all(isinstance(neck.lateral[level], lateral_type) for level in ("p3", "p4", "p5"))


def test_real_time_concat_fusion_by_hand():
    torch.manual_seed(7)
    channels = {"c3": 16, "c4": 32, "c5": 64}
    neck = RealTimeFaPN(channels, 16)
    feats = {k: v for k, v in features(8, 8, {"c2": 8, **channels}).items() if k != "c2"}
    out = neck(feats)
    p5 = neck.lateral["p5"](feats["c5"])
    reference = neck.lateral["p4"](feats["c4"])
    aligned = neck.align["p4"](p5, reference)
    torch.testing.assert_close(out["p4"], neck.merge["p4"](torch.cat([aligned, reference], dim=1)))
    torch.testing.assert_close(out["p5"], p5)
