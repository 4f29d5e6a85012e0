"""Deformable convolution (models.ops.ModulatedDeformConv2d on torchvision.ops.deform_conv2d)."""

import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from alignbench.models.ops import ModulatedDeformConv2d


def test_zero_offsets_and_unit_mask_equal_a_plain_conv():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 13, 17, dtype=torch.float64)
    weight = torch.randn(24, 16, 3, 3, dtype=torch.float64)
    bias = torch.randn(24, dtype=torch.float64)
    offset = torch.zeros(2, 2 * 8 * 9, 13, 17, dtype=torch.float64)
    mask = torch.ones(2, 8 * 9, 13, 17, dtype=torch.float64)
    deformed = deform_conv2d(x, offset, weight, bias, padding=(1, 1), mask=mask)
    torch.testing.assert_close(deformed, F.conv2d(x, weight, bias, padding=1), rtol=0, atol=1e-10)


def test_module_with_unit_mask_and_zero_offsets_equals_conv_with_same_weights():
    torch.manual_seed(1)
    dcn = ModulatedDeformConv2d(16, 16, 3, deformable_groups=8).double()
    with torch.no_grad():
        dcn.bias.normal_()
        # zero offset weights, mask logits -> +inf-like so that sigmoid(mask) == 1
        dcn.conv_offset_mask.bias[dcn.num_offset_channels :] = 50.0
    x = torch.randn(1, 16, 9, 11, dtype=torch.float64)
    output, offset, mask = dcn(x, x)
    assert torch.count_nonzero(offset) == 0
    torch.testing.assert_close(mask, torch.ones_like(mask))
    torch.testing.assert_close(output, F.conv2d(x, dcn.weight, dcn.bias, padding=1), rtol=0, atol=1e-10)


def test_initialisation_zero_offsets_half_masks():
    torch.manual_seed(2)
    dcn = ModulatedDeformConv2d(32, 32, 3, deformable_groups=8, offset_in_channels=32)
    assert dcn.conv_offset_mask.out_channels == 3 * 8 * 9  # 216, FaPN DCN facts
    assert torch.count_nonzero(dcn.conv_offset_mask.weight) == 0
    assert torch.count_nonzero(dcn.conv_offset_mask.bias) == 0
    assert torch.count_nonzero(dcn.bias) == 0
    bound = 1.0 / (32 * 9) ** 0.5
    assert dcn.weight.abs().max() <= bound
    x = torch.randn(2, 32, 10, 12)
    output, offset, mask = dcn(x, torch.randn(2, 32, 10, 12))
    assert offset.shape == (2, 144, 10, 12) and torch.count_nonzero(offset) == 0
    assert mask.shape == (2, 72, 10, 12) and torch.all(mask == 0.5)
    torch.testing.assert_close(output, F.conv2d(x, 0.5 * dcn.weight, dcn.bias, padding=1), rtol=1e-5, atol=1e-5)


def test_offset_layout_is_dy_then_dx():
    """Channel 2n shifts sample n vertically, 2n+1 horizontally (what the capture docs promise)."""
    torch.manual_seed(3)
    x = torch.randn(1, 8, 10, 12, dtype=torch.float64)
    weight = torch.randn(8, 8, 3, 3, dtype=torch.float64)
    mask = torch.ones(1, 9, 10, 12, dtype=torch.float64)
    shifted_down = torch.zeros_like(x)
    shifted_down[:, :, :-1] = x[:, :, 1:]  # value at y comes from y + 1
    shifted_right = torch.zeros_like(x)
    shifted_right[..., :-1] = x[..., 1:]
    for channel, reference in ((0, shifted_down), (1, shifted_right)):
        offset = torch.zeros(1, 18, 10, 12, dtype=torch.float64)
        offset[:, channel::2] = 1.0
        output = deform_conv2d(x, offset, weight, padding=(1, 1), mask=mask)
        expected = F.conv2d(reference, weight, padding=1)
        # borders differ (the conv zero-pads the shifted map, the DCN samples the real neighbour)
        torch.testing.assert_close(output[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], rtol=0, atol=1e-10)


def test_nan_offsets_do_not_crash():
    dcn = ModulatedDeformConv2d(8, 8, 3, deformable_groups=1)
    with torch.no_grad():
        dcn.conv_offset_mask.bias[:18] = float("nan")
    output, offset, _ = dcn(torch.randn(1, 8, 6, 6), torch.randn(1, 8, 6, 6))
    assert torch.isfinite(offset).all() and torch.isfinite(output).all()


def test_gradients_reach_weights_offsets_and_inputs():
    torch.manual_seed(4)
    dcn = ModulatedDeformConv2d(16, 16, 3, deformable_groups=8)
    x = torch.randn(1, 16, 8, 8, requires_grad=True)
    output, _, _ = dcn(x, x)
    output.square().sum().backward()
    for name, parameter in dcn.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0
