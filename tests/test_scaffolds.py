"""Neck registration and composition (models.scaffolds): names, collisions with paper rows, P6, SFNet's neck."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from alignbench import models
from alignbench.models.fapn.neck import FaPN
from alignbench.models.fpn import FPN
from alignbench.models.scaffolds import BACKBONES, SCAFFOLDS, NeckEntry, PyramidWithP6, compose, composed_name, register_neck
from alignbench.models.sfnet.decoder import upsample_aligned_corners
from alignbench.models.sfnet.neck import FlowAlignedFPN

R18 = {"c2": 64, "c3": 128, "c4": 256, "c5": 512}


@register_neck("scaffoldtestneck", label="Test neck")
class TinyNeck(nn.Module):
    """A plugin-style neck: no `top_block`, no `out_channels` attribute."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.convs = nn.ModuleDict({f"p{k[1:]}": nn.Conv2d(c, out_channels, 1) for k, c in in_channels.items()})
        self.strides = {f"p{k[1:]}": 2 ** int(k[1:]) for k in in_channels}

    def forward(self, features):
        return {level: conv(features[f"c{level[1:]}"]) for level, conv in self.convs.items()}


def _features(channels=R18, size=(64, 128)):
    torch.manual_seed(0)
    return {name: torch.randn(1, c, size[0] // 2 ** int(name[1:]), size[1] // 2 ** int(name[1:])) for name, c in channels.items()}


def test_every_scaffold_and_backbone_is_composed_for_every_neck():
    for neck in ("fpn", "fapn", "sfnet", "fpt", "scaffoldtestneck"):
        for scaffold, spec in SCAFFOLDS.items():
            for backbone in BACKBONES:
                info = models.get_info(composed_name(scaffold, neck, backbone))
                assert info.task == spec.task
                assert info.backbone == f"R{BACKBONES[backbone]}"
    assert models.get_info("semantic_fpn_scaffoldtestneck_r18").neck == "Test neck"
    entry = next(n for n in models.list_necks() if n.name == "scaffoldtestneck")
    assert len(entry.models) == len(SCAFFOLDS) * len(BACKBONES) == 20


def test_composed_names_that_are_paper_rows_keep_the_paper_row():
    # these composed names are paper rows: the row's metadata stays, and its builder is the composed one
    for name, paper in [("pointrend_fpn_r50", "FaPN"), ("pointrend_fapn_r101", "FaPN"), ("faster_rcnn_fapn_r50", "FaPN"),
                        ("panoptic_fpn_r101", "FaPN"), ("mask_rcnn_fpt_r50", "FPT"), ("mask_rcnn_fpt_r101", "FPT")]:
        assert models.get_info(name).paper == paper
    composed = [info for info in models.list_models() if not info.paper]
    assert composed and all(info.table == "" for info in composed)


def test_a_composed_name_colliding_with_a_different_model_is_refused():
    # "fpn" with extra output convs would be called pointrend_fpn_r50, which is plain FPN: refused, nothing registered
    entry = NeckEntry("fpn", FPN, {"extra_output_convs": 1}, "FPN+")
    before = len(models.list_models())
    with pytest.raises(ValueError, match="already registered as a different model"):
        compose(entry)
    assert len(models.list_models()) == before


def test_register_neck_refuses_bad_names_duplicates_and_non_necks():
    with pytest.raises(ValueError, match="lower-case"):
        register_neck("My_Neck")
    with pytest.raises(ValueError, match="already registered"):
        register_neck("fapn")(FaPN)
    with pytest.raises(TypeError, match="nn.Module subclass"):
        register_neck("notaneck")(lambda in_channels, out_channels: None)
    with pytest.raises(TypeError, match=r"\(in_channels, out_channels\)"):

        @register_neck("oneargneck")
        class OneArgument(nn.Module):
            def __init__(self, in_channels):
                super().__init__()


def test_pyramid_with_p6_is_fpn_top_block():
    torch.manual_seed(0)
    plain = FPN(R18, 32)
    with_block = FPN(R18, 32, top_block=True)
    with_block.load_state_dict(plain.state_dict())
    wrapped = PyramidWithP6(plain, 32)
    features = _features()
    expected, ours = with_block(features), wrapped(features)
    assert list(ours) == list(expected) == ["p2", "p3", "p4", "p5", "p6"]
    assert wrapped.strides == with_block.strides
    for level in expected:
        torch.testing.assert_close(ours[level], expected[level])


def test_plugin_neck_without_top_block_runs_in_detection_and_semantic_scaffolds():
    torch.manual_seed(0)
    detector = models.build("mask_rcnn_scaffoldtestneck_r18", num_classes=3, neck_channels=32, min_size=64, max_size=128).eval()
    assert isinstance(detector.rcnn.backbone.neck, PyramidWithP6)
    with torch.no_grad():
        (output,) = detector([torch.rand(3, 64, 128)])
    assert {"boxes", "labels", "scores", "masks"} <= set(output)
    segmenter = models.build("semantic_fpn_scaffoldtestneck_r18", num_classes=4, neck_channels=32, head_channels=32).eval()
    with torch.no_grad():
        assert segmenter(torch.rand(1, 3, 40, 72)).shape == (1, 4, 40, 72)


def test_builtin_necks_with_top_block_are_not_wrapped():
    detector = models.build("faster_rcnn_sfnet_r18", num_classes=3, neck_channels=32, min_size=64, max_size=128)
    assert isinstance(detector.rcnn.backbone.neck, FlowAlignedFPN)
    builder = models.registry.get_builder("faster_rcnn_fapn_r18")
    assert isinstance(builder, functools.partial) and builder.keywords["neck"] is FaPN


def test_flow_aligned_fpn_with_zero_flow_is_fpn_with_aligned_corners_upsampling():
    # FAM warps the coarse map along the flow; with zero flow it is the bilinear (align_corners=True) upsampling
    torch.manual_seed(0)
    neck = FlowAlignedFPN(R18, 32)
    for fam in neck.align.values():
        nn.init.zeros_(fam.flow.weight)
    features = _features()
    ours = neck(features)
    previous = neck.lateral["p5"](features["c5"])
    expected = {"p5": neck.output["p5"](previous)}
    for level in ("p4", "p3", "p2"):
        lateral = neck.lateral[level](features[f"c{level[1:]}"])
        previous = lateral + upsample_aligned_corners(previous, lateral.shape[-2:])
        expected[level] = neck.output[level](previous)
    for level in expected:
        torch.testing.assert_close(ours[level], expected[level], atol=1e-5, rtol=1e-5)
    # and with a non-zero flow it differs from that upsampling
    nn.init.normal_(neck.align["p2"].flow.weight, std=1.0)
    assert not torch.allclose(neck(features)["p2"], expected["p2"], atol=1e-3)


def test_flow_aligned_fpn_without_alignment_differences_is_fpn_layout():
    # same laterals and output convs as FPN: loading FPN's weights (strict=False) leaves only FAM's parameters
    fpn, ours = FPN(R18, 32), FlowAlignedFPN(R18, 32)
    result = ours.load_state_dict(fpn.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert all(key.startswith("align.") for key in result.missing_keys)


# The composed models are not in the every-paper-row tests (test_profiling, test_models_segmentation,
# test_detection_models); these cover what composition adds: the SFNet neck in every scaffold, and every
# built-in neck in the Semantic FPN scaffold.
COVERED = [composed_name(scaffold, "sfnet", "r18") for scaffold in SCAFFOLDS] + [
    composed_name("semantic_fpn", neck, "r18") for neck in ("fpn", "fapn", "fpt")
]


@pytest.mark.parametrize("name", COVERED)
def test_composed_models_have_every_operator_counted(name):
    from alignbench.bench.profiling import build_for_profiling, count_flops

    size = (64, 128)
    complexity = count_flops(build_for_profiling(name, size), size)
    assert complexity.uncounted_ops == {}
    assert complexity.macs > 0 and complexity.params == models.measured_params(name)


def test_sfnet_neck_trains_in_the_semantic_and_detection_scaffolds():
    torch.manual_seed(0)
    segmenter = models.build("semantic_fpn_sfnet_r18", num_classes=5, neck_channels=32, head_channels=32).train()
    losses = segmenter.loss(torch.rand(2, 3, 64, 128), torch.randint(0, 5, (2, 64, 128)))
    sum(losses.values()).backward()
    for name, parameter in segmenter.neck.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    detector = models.build("faster_rcnn_sfnet_r18", num_classes=3, neck_channels=32, min_size=64, max_size=128).train()
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 40.0, 30.0]]), "labels": torch.tensor([1])}]
    losses = detector.loss([torch.rand(3, 64, 128)], targets)
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)
    assert detector.rcnn.backbone.neck.align["p2"].flow.weight.grad is not None
