"""The CPU path of the deformable convolution (models.ops.deform.deform_conv2d_by_sampling) against torchvision's."""

import pytest
import torch
from torchvision.ops import deform_conv2d

from alignbench import models
from alignbench.models.ops import ModulatedDeformConv2d
from alignbench.models.ops.deform import deform_conv2d_by_sampling


def make_inputs(*, channels=16, out_channels=12, groups=4, kernel=3, size=(13, 17), out_size=None, offset_std=3.0,
                modulated=True, dtype=torch.float32, seed=0):
    """Input, offset, mask (or None), weight, bias; offsets of `offset_std` px reach outside the map."""
    generator = torch.Generator().manual_seed(seed)
    out_h, out_w = out_size or size
    taps = groups * kernel * kernel

    def random(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype)

    x = random(2, channels, *size)
    offset = offset_std * random(2, 2 * taps, out_h, out_w)
    mask = torch.rand(2, taps, out_h, out_w, generator=generator, dtype=dtype) if modulated else None
    weight = random(out_channels, channels, kernel, kernel)
    bias = random(out_channels)
    return [t.requires_grad_() if t is not None else None for t in (x, offset, mask, weight, bias)]


def outputs_and_gradients(kernel, inputs, **options):
    x, offset, mask, weight, bias = inputs
    output = kernel(x, offset, weight, bias, mask=mask, **options)
    upstream = torch.randn(output.shape, generator=torch.Generator().manual_seed(99), dtype=output.dtype)
    differentiable = [t for t in inputs if t is not None]
    return [output.detach(), *torch.autograd.grad(output, differentiable, upstream)]


def assert_same(new, reference, rtol):
    """Equal up to `rtol` of each tensor's largest magnitude (float32 sums in another order)."""
    for ours, theirs in zip(new, reference, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=rtol * float(theirs.abs().max()))


@pytest.mark.parametrize(
    ("groups", "kernel", "modulated"),
    [(1, 3, True), (4, 3, True), (16, 3, True), (4, 3, False), (2, 1, True), (2, 1, False)],
)
def test_forward_and_gradients_equal_torchvision(groups, kernel, modulated):
    inputs = make_inputs(groups=groups, kernel=kernel, modulated=modulated)
    padding = (kernel // 2, kernel // 2)
    new = outputs_and_gradients(deform_conv2d_by_sampling, inputs, padding=padding)
    reference = outputs_and_gradients(deform_conv2d, inputs, padding=padding)
    assert float(inputs[1].detach().abs().max()) > 8  # some samples fall outside the 13 x 17 map
    assert_same(new, reference, rtol=1e-5)


def test_float64_is_exact_to_rounding():
    """In double precision the two agree to 1e-12: the same function, not an approximation of it."""
    inputs = make_inputs(dtype=torch.float64, seed=1)
    new = outputs_and_gradients(deform_conv2d_by_sampling, inputs, padding=(1, 1))
    reference = outputs_and_gradients(deform_conv2d, inputs, padding=(1, 1))
    assert_same(new, reference, rtol=1e-12)


@pytest.mark.parametrize("size", [(12, 24), (13, 17), (6, 12)])
def test_integer_positions_take_torchvision_side_of_the_derivative(size):
    """Zero (FaPN at initialisation) and whole-pixel offsets put samples on integer positions, where bilinear
    interpolation has a kink; the offset gradient must be torchvision's one-sided one (floor), which needs an
    exact pixel -> normalised -> pixel round trip."""
    for shift in (0.0, 1.0, -2.0):
        inputs = make_inputs(size=size, offset_std=0.0, seed=2)
        with torch.no_grad():
            inputs[1].fill_(shift)
        new = outputs_and_gradients(deform_conv2d_by_sampling, inputs, padding=(1, 1))
        reference = outputs_and_gradients(deform_conv2d, inputs, padding=(1, 1))
        assert_same(new, reference, rtol=1e-6)


def test_stride_and_dilation():
    inputs = make_inputs(size=(15, 20), out_size=(7, 9), seed=3)  # (15 + 2 - 2 * 2 - 1) // 2 + 1 = 7, (20 + ...) = 9
    options = {"stride": (2, 2), "padding": (1, 1), "dilation": (2, 2)}
    new = outputs_and_gradients(deform_conv2d_by_sampling, inputs, **options)
    reference = outputs_and_gradients(deform_conv2d, inputs, **options)
    assert_same(new, reference, rtol=1e-5)


def test_huge_offsets_read_zeros_like_torchvision():
    x, offset, mask, weight, bias = make_inputs(seed=4)
    with torch.no_grad():
        huge = torch.full_like(offset, 3e38)
        new = deform_conv2d_by_sampling(x, huge, weight, bias, padding=(1, 1), mask=mask)
        reference = deform_conv2d(x, huge, weight, bias, padding=(1, 1), mask=mask)
    torch.testing.assert_close(new, reference, rtol=0, atol=0)
    torch.testing.assert_close(new, bias.detach().view(1, -1, 1, 1).expand_as(new), rtol=0, atol=0)


def test_inference_without_gradients_equals_training_path():
    """Under no_grad the mask is applied in place; the result must not change."""
    inputs = make_inputs(seed=5)
    x, offset, mask, weight, bias = inputs
    with_grad = deform_conv2d_by_sampling(x, offset, weight, bias, padding=(1, 1), mask=mask)
    with torch.no_grad():
        without_grad = deform_conv2d_by_sampling(x, offset, weight, bias, padding=(1, 1), mask=mask)
    torch.testing.assert_close(without_grad, with_grad.detach(), rtol=0, atol=0)


def test_mismatched_offset_is_refused():
    x, offset, mask, weight, bias = make_inputs(seed=6)
    with pytest.raises(ValueError, match="offset of shape"):
        deform_conv2d_by_sampling(x, offset[:, :, :-1], weight, bias, padding=(1, 1), mask=mask[:, :, :-1])


def operators_called(module, *inputs):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        module(*inputs)
    return {event.key for event in profile.key_averages()}


def test_module_samples_on_the_cpu_unless_told_not_to():
    """Under tracing torchvision's operator stays (fvcore counts it): tests/test_profiling.py checks its count."""
    dcn = ModulatedDeformConv2d(16, 16, 3, deformable_groups=8)
    x = torch.randn(1, 16, 8, 8)
    called = operators_called(dcn, x, x)
    assert "aten::grid_sampler_2d" in called and "torchvision::deform_conv2d" not in called
    dcn.sample_on_cpu = False
    called = operators_called(dcn, x, x)
    assert "torchvision::deform_conv2d" in called and "aten::grid_sampler_2d" not in called


@pytest.mark.parametrize("modulated", [True, False])
def test_module_paths_agree_with_learned_offsets(modulated):
    torch.manual_seed(7)
    dcn = ModulatedDeformConv2d(16, 8, 3, deformable_groups=4, offset_in_channels=12, modulated=modulated)
    with torch.no_grad():
        dcn.conv_offset_mask.weight.normal_(std=0.3)  # offsets of a few pixels
        dcn.bias.normal_()
    x, offset_input = torch.randn(2, 16, 11, 14), torch.randn(2, 12, 11, 14)
    results = []
    for sample_on_cpu in (True, False):
        dcn.sample_on_cpu = sample_on_cpu
        dcn.zero_grad()
        output, offset, _ = dcn(x, offset_input)
        output.square().sum().backward()
        results.append([output.detach()] + [p.grad.clone() for p in dcn.parameters()])
    assert float(offset.detach().abs().max()) > 1.0
    assert_same(results[0], results[1], rtol=1e-5)


def test_module_under_cpu_autocast_computes_in_float32():
    """torchvision's CPU kernel has no bfloat16; under autocast the layer samples in float32, as torchvision's
    CUDA autocast rule does, from the (bfloat16) offsets and masks its offset conv predicted."""
    torch.manual_seed(9)
    dcn = ModulatedDeformConv2d(16, 16, 3, deformable_groups=8)
    with torch.no_grad():
        dcn.conv_offset_mask.weight.normal_(std=0.2)
    x = torch.randn(1, 16, 9, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, offset, mask = dcn(x, x)
    assert offset.dtype == mask.dtype == torch.bfloat16 and output.dtype == torch.float32
    expected = deform_conv2d(x, offset.float(), dcn.weight, dcn.bias, padding=(1, 1), mask=mask.float())
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)


def test_fapn_model_outputs_and_gradients_unchanged():
    """semantic_fpn_fapn_r18 with learned-looking offsets: logits and every parameter gradient as with torchvision."""
    torch.manual_seed(8)
    model = models.build("semantic_fpn_fapn_r18", num_classes=19, neck_channels=32, head_channels=32).train()
    dcns = [m for m in model.modules() if isinstance(m, ModulatedDeformConv2d)]
    assert len(dcns) == 3
    with torch.no_grad():
        for dcn in dcns:
            dcn.conv_offset_mask.weight.normal_(std=0.05)
    images, targets = torch.randn(2, 3, 64, 128), torch.randint(0, 19, (2, 64, 128))
    results = []
    for sample_on_cpu in (True, False):
        for dcn in dcns:
            dcn.sample_on_cpu = sample_on_cpu
        model.zero_grad()
        loss = sum(model.loss(images, targets).values())
        loss.backward()
        results.append([loss.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(results[0]) == len(results[1]) > 100
    assert_same(results[0], results[1], rtol=1e-4)
