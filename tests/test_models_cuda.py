"""The CUDA path of FaPN-R50 with PointRend (skipped without a CUDA device)."""

import pytest
import torch
import torch.nn.functional as F

from alignbench import models
from alignbench.models.ops import ModulatedDeformConv2d

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_fapn_r50_pointrend_forward_backward_on_cuda():
    torch.manual_seed(0)
    model = models.build("pointrend_fapn_r50").cuda().train()
    images = torch.rand(2, 3, 256, 512, device="cuda")
    targets = torch.randint(0, 19, (2, 256, 512), device="cuda")
    losses = model.loss(images, targets)
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    model.eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 513, 1025, device="cuda"))
    assert logits.shape == (1, 19, 513, 1025) and torch.isfinite(logits).all()


def test_deformable_conv_agrees_between_cpu_and_cuda():
    torch.manual_seed(1)
    dcn = ModulatedDeformConv2d(32, 32, 3, deformable_groups=8)
    with torch.no_grad():
        dcn.conv_offset_mask.weight.normal_(std=0.1)
    x = torch.randn(2, 32, 20, 28)
    cpu_out, cpu_offset, _ = dcn(x, x)
    assert cpu_offset.abs().max() > 0.5  # non-trivial offsets
    cuda_out, _, _ = dcn.cuda()(x.cuda(), x.cuda())
    torch.testing.assert_close(cuda_out.cpu(), cpu_out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(F.relu(cuda_out).cpu(), F.relu(cpu_out), rtol=1e-4, atol=1e-4)
