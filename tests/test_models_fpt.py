"""FPT: mixture of softmaxes, self / grounding (global, locality-constrained) / rendering transformers, the
FPT neck (detection interface), UFP and the Table 4 segmentation models."""

import pytest
import torch
import torch.nn.functional as F
from alignbench_test_helpers import assert_few_sgd_steps_lower_the_loss

from alignbench import models
from alignbench.models.backbones import ResNetBackbone
from alignbench.models.fpt.transformer import (
    FPT,
    FeaturePyramidTransformer,
    GroundingTransformer,
    RenderingTransformer,
    SelfTransformer,
)
from alignbench.models.fpt.ufp import UFP, TallConv2d

FPT_MODELS = [info.name for info in models.list_models(task="semantic") if info.paper == "FPT"]

# Exact counts with 19 classes (frozen backbone BN) and FPT Table 4's numbers. None of the rows can match:
# the paper's increments make ST / GT (1x1 transforms in the text) several times larger than RT (three 3x3
# convs in the text); see models/fpt/zoo.py. Pinned so that any layer change shows.
MEASURED = {
    "fpt_ufp_r101": (59_838_931, 71.3),
    "fpt_ufp_st_r101": (65_351_123, 91.2),
    "fpt_ufp_lgt_r101": (66_929_619, 102.8),
    "fpt_ufp_rt_r101": (76_365_267, 77.4),
    "fpt_ufp_lgt_st_r101": (70_080_467, 121.3),
    "fpt_ufp_rt_st_r101": (79_516_115, 96.2),
    "fpt_ufp_lgt_rt_r101": (81_094_611, 107.0),
    "fpt_ufp_lgt_st_rt_r101": (84_245_459, 127.2),
}


def maps(*shapes, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=generator, dtype=dtype) for shape in shapes]


def brute_force_weights(module, fine, coarse, similarity):
    """MoS weights (B, L, S) straight from the formulas of FPT eq. 2-5, one query / key pair at a time."""
    q = module.query(fine).flatten(2)  # (B, C, L)
    k = module.key(coarse).flatten(2)  # (B, C, S)
    parts = module.parts
    pi = torch.softmax(k.mean(dim=2) @ module.prior.weight.t(), dim=1)  # (B, N)
    batch, channels, length = q.shape
    d = channels // parts
    weights = torch.zeros(batch, length, k.shape[2], dtype=q.dtype)
    for n in range(parts):
        qn, kn = q[:, n * d : (n + 1) * d], k[:, n * d : (n + 1) * d]
        if similarity == "dot":
            scores = torch.einsum("bci,bcj->bij", qn, kn)
        else:
            scores = -((qn[:, :, :, None] - kn[:, :, None, :]) ** 2).sum(dim=1)
        weights += pi[:, n, None, None] * torch.softmax(scores, dim=2)
    return weights


def test_self_transformer_mos_weights_sum_to_one_and_match_the_formula():
    torch.manual_seed(0)
    st = SelfTransformer(16, parts=2).double()
    (x,) = maps((2, 16, 5, 7))
    weights = st.attention_weights(x)
    assert weights.shape == (2, 35, 35)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, 35, dtype=torch.float64))
    torch.testing.assert_close(weights, brute_force_weights(st, x, x, "dot"))
    # forward (scaled_dot_product_attention, one call per part) = explicit weights applied to the values
    values = st.value(x).flatten(2)
    expected = torch.einsum("bij,bcj->bci", weights, values).reshape(2, 16, 5, 7)
    torch.testing.assert_close(st(x), expected)


def test_mixture_weights_are_a_softmax_of_the_mean_key():
    torch.manual_seed(1)
    st = SelfTransformer(8, parts=4)
    keys = torch.randn(3, 8, 4, 4)
    pi = st.prior(keys)
    assert pi.shape == (3, 4)
    torch.testing.assert_close(pi.sum(dim=1), torch.ones(3))
    torch.testing.assert_close(pi, torch.softmax(keys.mean(dim=(2, 3)) @ st.prior.weight.t(), dim=1))


def test_grounding_transformer_uses_negative_squared_euclidean_distance():
    torch.manual_seed(2)
    gt = GroundingTransformer(16, parts=4).double()
    fine, coarse = maps((2, 16, 6, 8), (2, 16, 3, 4), seed=3)
    weights = gt.attention_weights(fine, coarse)
    assert weights.shape == (2, 48, 12)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, 48, dtype=torch.float64))
    torch.testing.assert_close(weights, brute_force_weights(gt, fine, coarse, "euclidean"))
    values = gt.value(coarse).flatten(2)
    expected = torch.einsum("bij,bcj->bci", weights, values).reshape(2, 16, 6, 8)
    output = gt(fine, coarse)
    assert output.shape == fine.shape
    torch.testing.assert_close(output, expected)


def test_local_grounding_equals_global_when_the_window_covers_the_map():
    """With positions outside the map excluded (outside="mask"), a window of 2 * max(H, W) - 1 around every
    query holds the whole map: LGT and GT are then the same function of the same parameters."""
    torch.manual_seed(4)
    fine, coarse = maps((2, 16, 5, 6), (2, 16, 5, 6), seed=5)
    global_gt = GroundingTransformer(16, parts=4).double()
    local_gt = GroundingTransformer(16, parts=4, square_size=11, outside="mask").double()
    local_gt.load_state_dict(global_gt.state_dict())
    torch.testing.assert_close(local_gt(fine, coarse), global_gt(fine, coarse))
    weights = local_gt.attention_weights(fine, coarse)  # (B, 121, H, W) over window offsets
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 5, 6, dtype=torch.float64))


def test_local_grounding_with_zero_padding_matches_a_brute_force_loop():
    """The paper's LGT: keys / values outside the map are 0 and take part in the softmax (score -||q_n||^2)."""
    torch.manual_seed(6)
    lgt = GroundingTransformer(8, parts=2, square_size=3).double()
    fine, coarse = maps((1, 8, 4, 5), (1, 8, 4, 5), seed=7)
    q, k, v = lgt.query(fine)[0], lgt.key(coarse)[0], lgt.value(coarse)[0]
    pi = torch.softmax(k.mean(dim=(1, 2)) @ lgt.prior.weight.t(), dim=0)
    expected = torch.zeros_like(q)
    for y in range(4):
        for x in range(5):
            keys, values = [], []
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    inside = 0 <= y + dy < 4 and 0 <= x + dx < 5
                    keys.append(k[:, y + dy, x + dx] if inside else torch.zeros(8, dtype=k.dtype))
                    values.append(v[:, y + dy, x + dx] if inside else torch.zeros(8, dtype=v.dtype))
            keys, values = torch.stack(keys), torch.stack(values)  # (9, C)
            weight = torch.zeros(9, dtype=q.dtype)
            for n in range(2):
                part = slice(4 * n, 4 * (n + 1))
                scores = -((q[part, y, x][None] - keys[:, part]) ** 2).sum(dim=1)
                weight += pi[n] * torch.softmax(scores, dim=0)
            assert weight.sum().item() == pytest.approx(1.0)
            expected[:, y, x] = weight @ values
    torch.testing.assert_close(lgt(fine, coarse)[0], expected)
    weights = lgt.attention_weights(fine, coarse)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(1, 4, 5, dtype=torch.float64))


def test_local_grounding_centres_the_window_on_the_nearest_coarse_position():
    """Coarse map of half the size, 1 x 1 window: each fine query reads exactly its nearest coarse value."""
    torch.manual_seed(8)
    lgt = GroundingTransformer(8, parts=2, square_size=1).double()
    fine, coarse = maps((1, 8, 6, 8), (1, 8, 3, 4), seed=9)
    expected = F.interpolate(lgt.value(coarse), size=(6, 8), mode="nearest")
    torch.testing.assert_close(lgt(fine, coarse), expected)


def test_rendering_transformer_follows_eq_6():
    torch.manual_seed(10)
    rt = RenderingTransformer(8, stride=2).double()
    fine, coarse = maps((2, 8, 8, 12), (2, 8, 4, 6), seed=11)
    weight = fine.mean(dim=(2, 3), keepdim=True)
    expected = rt.output(rt.refine(coarse * weight) + rt.downsample(fine))
    output = rt(fine, coarse)
    assert output.shape == coarse.shape
    torch.testing.assert_close(output, expected)
    assert rt.downsample.stride == (2, 2)
    assert RenderingTransformer(8, stride=1).downsample.stride == (1, 1)  # equal scales (UFP)


def test_pyramid_transformer_topology_and_widths():
    block = FeaturePyramidTransformer(16, {"p2": 4, "p3": 8, "p4": 16, "p5": 32}, st_parts=2, gt_parts=4)
    assert sorted(block.gt) == ["p3_to_p2", "p4_to_p2", "p4_to_p3", "p5_to_p2", "p5_to_p3", "p5_to_p4"]
    assert sorted(block.rt) == ["p2_to_p3", "p2_to_p4", "p2_to_p5", "p3_to_p4", "p3_to_p5", "p4_to_p5"]
    assert block.rt["p2_to_p5"].downsample.stride == (8, 8)
    # every level: [X, ST, GT from each coarser level, RT from each finer level] -> 3x3 conv to C
    assert {level: conv.in_channels // 16 for level, conv in block.fuse.items()} == {"p2": 5, "p3": 5, "p4": 5, "p5": 5}
    adjacent = FeaturePyramidTransformer(16, {"p2": 4, "p3": 8, "p4": 16, "p5": 32}, pairs="adjacent")
    assert sorted(adjacent.gt) == ["p3_to_p2", "p4_to_p3", "p5_to_p4"]
    only_rt = FeaturePyramidTransformer(16, {"p2": 4, "p3": 8}, transformers=("rt",))
    assert not only_rt.st and not only_rt.gt
    assert {level: conv.in_channels for level, conv in only_rt.fuse.items()} == {"p2": 16, "p3": 32}
    with pytest.raises(ValueError, match="transformers"):
        FeaturePyramidTransformer(16, {"p2": 4}, transformers=("xt",))


def test_fpt_neck_has_the_fpn_interface_and_trains():
    torch.manual_seed(12)
    r18 = {"c2": 64, "c3": 128, "c4": 256, "c5": 512}
    neck = FPT(r18, 32, top_block=True)
    assert neck.out_channels == 32 and neck.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    backbone = ResNetBackbone(18)
    x = torch.rand(2, 3, 64, 128)
    outputs = neck(backbone(x))
    assert list(outputs) == ["p2", "p3", "p4", "p5", "p6"]
    assert [tuple(t.shape) for t in outputs.values()] == [(2, 32, 64 // s, 128 // s) for s in (4, 8, 16, 32, 64)]
    sum(t.square().mean() for t in outputs.values()).backward()
    silent = [name for name, p in neck.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not silent
    neck.eval()  # DropBlock only in training
    with torch.no_grad():
        features = backbone.eval()(x)
        torch.testing.assert_close(neck(features)["p2"], neck(features)["p2"])
    on_fpn = FPT(r18, 32, pyramid="fpn")
    assert on_fpn.fpn is not None and list(on_fpn(backbone(x))) == ["p2", "p3", "p4", "p5"]


def test_fpt_neck_plugs_into_the_detection_backbone():
    from alignbench.models.detection.rcnn import PyramidBackbone  # a broken import must fail, not skip

    body = ResNetBackbone(18)
    backbone = PyramidBackbone(body, FPT(body.out_channels, 32, top_block=True)).eval()
    with torch.no_grad():
        outputs = backbone(torch.rand(1, 3, 64, 64))
    assert list(outputs) == ["p2", "p3", "p4", "p5", "p6"] and backbone.out_channels == 32


def test_ufp_cascade_and_tall_convs():
    torch.manual_seed(13)
    ufp = UFP({"c5": 64}, 16)
    outputs = ufp({"c5": torch.randn(2, 64, 9, 11)})
    assert list(outputs) == ["u1", "u7", "u15", "u31"] and all(t.shape == (2, 16, 9, 11) for t in outputs.values())
    assert ufp.blocks["u7"].left[0].in_channels == 16  # cascade: each block reads the previous level
    parallel = UFP({"c5": 64}, 16, arrangement="parallel")
    assert parallel.blocks["u7"].left[0].in_channels == 64
    conv = TallConv2d(4, 6, 31).double()
    x = torch.randn(1, 4, 12, 12, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=(15, 0)))
    conv(x).sum().backward()  # k x 1 kernels taller than the map: PyTorch's oneDNN backward crashes on these
    assert x.grad is not None


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_table_4_parameter_counts(name):
    measured = models.measured_params(name, num_classes=19)
    count, paper = MEASURED[name]
    assert measured == count
    assert models.get_info(name).paper_params_m == paper
    assert models.get_info(name).paper_gflops is not None


def test_every_table_4_row_is_registered():
    assert set(FPT_MODELS) == set(MEASURED)
    full = models.build("fpt_ufp_lgt_st_rt_r101", neck_channels=32, head_channels=32)
    assert full.transformer.gt["u31_to_u1"].square_size == 5
    assert full.transformer.st["u1"].parts == 2 and full.transformer.gt["u31_to_u1"].parts == 4
    assert full.transformer.dropblock.block_size == 3 and full.transformer.dropblock.p == pytest.approx(0.1)
    assert models.build("fpt_ufp_r101", neck_channels=32, head_channels=32).transformer is None


@pytest.mark.parametrize("name", ["fpt_ufp_r101", "fpt_ufp_lgt_st_rt_r101"])
def test_odd_input_sizes(name):
    torch.manual_seed(0)
    model = models.build(name, neck_channels=32, head_channels=32).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 45, 83)).shape == (1, 19, 45, 83)


def test_gradients_reach_every_parameter_of_the_full_model():
    torch.manual_seed(0)
    model = models.build("fpt_ufp_lgt_st_rt_r101", neck_channels=32, head_channels=32).train()
    model.loss(torch.rand(2, 3, 64, 64), torch.randint(0, 19, (2, 64, 64)))["loss_sem_seg"].backward()
    silent = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not silent


@pytest.mark.parametrize("name", FPT_MODELS)
def test_a_few_sgd_steps_lower_the_loss(name):
    torch.manual_seed(0)
    model = models.build(name, neck_channels=32, head_channels=32).train()
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 64, 64, generator=generator)
    targets = torch.randint(0, 19, (2, 64, 64), generator=generator)
    targets[:, :32] = 3
    assert_few_sgd_steps_lower_the_loss(model, lambda m: m.loss(images, targets)["loss_sem_seg"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fpt_on_cuda_agrees_with_the_cpu():
    torch.manual_seed(14)
    block = FeaturePyramidTransformer(32, {"p2": 4, "p3": 8}, square_size=5).eval()
    pyramid = {"p2": torch.randn(1, 32, 16, 24), "p3": torch.randn(1, 32, 8, 12)}
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        cpu = block(pyramid)
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False  # exact fp32 products on Ampere+ for the comparison
        try:
            cuda = block.cuda()({k: v.cuda() for k, v in pyramid.items()})
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
    for level in cpu:
        torch.testing.assert_close(cuda[level].cpu(), cpu[level], rtol=1e-3, atol=1e-3)
    model = models.build("fpt_ufp_lgt_st_rt_r101").cuda().train()
    images, targets = torch.rand(2, 3, 256, 512, device="cuda"), torch.randint(0, 19, (2, 256, 512), device="cuda")
    loss = model.loss(images, targets)["loss_sem_seg"]
    loss.backward()
    assert torch.isfinite(loss)
