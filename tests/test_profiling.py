"""Profiling: every operator of every registered model is counted; MACs agree with PyTorch's counter."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from alignbench import models
from alignbench.bench.profiling import build_for_profiling, count_flops, measure_latency
from alignbench.models.ops.deform import ModulatedDeformConv2d

SMALL = (64, 128)


# paper rows; composed scaffold models (no paper) are covered by tests/test_scaffolds.py
@pytest.mark.parametrize("name", [info.name for info in models.list_models() if info.paper])
def test_every_registered_model_has_every_operator_counted(name):
    model = build_for_profiling(name, SMALL)
    complexity = count_flops(model, SMALL)
    assert complexity.uncounted_ops == {}
    assert complexity.macs > 0 and complexity.other_ops > 0
    assert complexity.params == models.measured_params(name)


def _torch_counts(model: nn.Module, inputs) -> dict[str, int]:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*inputs)
    # keys print as "aten.convolution" (or "aten.convolution.default"): keep the operator name
    return {str(op).split(".")[1]: n for op, n in counter.get_flop_counts()["Global"].items()}


@pytest.mark.parametrize("name", ["pointrend_fpn_r50", "pointrend_fpn_deconv_fsm_r50", "rt_fapn_r18"])
def test_convolution_and_matmul_macs_match_pytorch_flop_counter(name, monkeypatch):
    # fvcore's trace sees torchvision's deform_conv2d; the eager FlopCounterMode run must too (on the CPU the
    # layer otherwise samples with grid_sample and bmm, which FlopCounterMode would count as a matmul)
    monkeypatch.setattr(ModulatedDeformConv2d, "sample_on_cpu", False)
    model = build_for_profiling(name)
    inputs = (torch.rand(1, 3, *SMALL),)
    ours = count_flops(model, SMALL, inputs).macs_by_op
    theirs = _torch_counts(model, inputs)
    convolution = sum(n for op, n in theirs.items() if "convolution" in op)
    assert ours["conv"] * 2 == convolution  # FlopCounterMode counts 2 FLOPs per MAC
    matmul = sum(n for op, n in theirs.items() if op in ("mm", "addmm", "bmm", "baddbmm"))
    ours_matmul = sum(ours.get(op, 0) for op in ("addmm", "linear", "matmul", "mm", "bmm", "einsum", "baddbmm"))
    assert ours_matmul * 2 == matmul


@pytest.mark.parametrize("transformer", ["self", "grounding"])
def test_attention_macs_match_pytorch_flop_counter(transformer):
    """FPT's attention runs through F.scaled_dot_product_attention (one operator for fvcore, which we
    cost as its two products); FlopCounterMode sees the CPU math path as bmm's, 2 FLOPs per MAC."""
    from alignbench.models.fpt.transformer import GroundingTransformer, SelfTransformer

    torch.manual_seed(0)
    fine, coarse = torch.rand(1, 32, 6, 10), torch.rand(1, 32, 3, 5)
    if transformer == "self":
        module, inputs = SelfTransformer(32, parts=2).eval(), (fine,)
    else:
        module, inputs = GroundingTransformer(32, parts=4).eval(), (fine, coarse)
    ours = count_flops(module, (6, 10), inputs)
    assert ours.uncounted_ops == {} and ours.macs_by_op["scaled_dot_product_attention"] > 0
    theirs = _torch_counts(module, inputs)
    assert ours.macs_by_op["scaled_dot_product_attention"] * 2 == theirs["bmm"]
    # per MoS part n: scores over C/N channels (GT: one more, the -||k||^2 column of its Euclidean scores)
    # and values over all C channels (v is not split)
    queries, keys, parts = (60, 60, 2) if transformer == "self" else (60, 15, 4)
    score_channels = 32 // parts + (transformer == "grounding")
    assert ours.macs_by_op["scaled_dot_product_attention"] == queries * keys * parts * (score_channels + 32)


def test_deformable_convolution_counts_convolution_plus_bilinear_sampling():
    layer = ModulatedDeformConv2d(16, 32, 3, deformable_groups=8).eval()
    x = torch.rand(1, 16, 10, 12)

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return self.layer(x, x)[0]

    counts = count_flops(Wrapper(), (10, 12), (x,)).macs_by_op
    offset_conv = 16 * (8 * 3 * 9) * 9 * 10 * 12  # the 3x3 offset / mask conv (16 -> 216 channels)
    deform = 32 * 16 * 9 * 10 * 12 + 16 * 9 * 10 * 12 * (4 + 1)  # conv MACs + bilinear (4) and mask (1)
    assert counts["deform_conv2d"] == deform
    assert counts["conv"] == offset_conv


def test_sampling_and_interpolation_handles():
    class Sampler(nn.Module):
        def forward(self, x):
            grid = torch.zeros(1, 6, 7, 2)
            up = F.interpolate(x, size=(20, 30), mode="bilinear", align_corners=False)
            near = F.interpolate(x, scale_factor=2.0, mode="nearest")
            return F.grid_sample(x, grid, align_corners=True), up, near

    counts = count_flops(Sampler(), (10, 15), (torch.rand(1, 4, 10, 15),)).macs_by_op
    assert counts["grid_sampler"] == 4 * 4 * 6 * 7
    assert counts["upsample_bilinear2d"] == 4 * 4 * 20 * 30
    assert counts.get("upsample_nearest2d", 0) == 0  # a copy: no arithmetic


def test_cpu_latency_is_labelled_and_plausible():
    result = measure_latency(build_for_profiling("rt_fpn_r18"), SMALL, device="cpu", warmup=1, iterations=3)
    assert result.device == "cpu" and result.dtype == "fp32" and result.batch == 1
    assert 0 < result.median_ms <= result.p90_ms and result.fps == pytest.approx(1000 / result.median_ms)
    assert result.peak_memory_mb is None and "CPU" in result.label()
    assert result.environment["torch"] == torch.__version__
    with pytest.raises(ValueError, match="fp16"):
        measure_latency(build_for_profiling("rt_fpn_r18"), SMALL, device="cpu", dtype="fp16")


@pytest.mark.cuda
def test_cuda_latency_records_the_gpu():
    result = measure_latency(build_for_profiling("rt_fapn_r18"), (256, 512), device="cuda", warmup=3, iterations=5)
    assert result.environment["gpu"] and result.environment["cuda"] and result.peak_memory_mb > 0


def test_profile_cli_table_json_and_errors(cli):
    table = cli("profile", "rt_fapn_r18", "--input", "64x128", "--device", "cpu", "--iters", "2", "--warmup", "1")
    assert table.returncode == 0, table.stderr
    assert "GMACs" in table.stdout and "what the papers call GFLOPs" in table.stdout and "CPU" in table.stdout
    for args, message in [
        (("profile", "no_such_model"), "unknown model"),
        (("profile",), "give a MODEL name or --all"),
        (("profile", "rt_fapn_r18", "--device", "cpu", "--dtype", "fp16"), "needs CUDA"),
        (("profile", "rt_fapn_r18", "--device", "tpu"), "--device"),
    ]:
        result = cli(*args)
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_profile_all_lists_every_model_of_the_task(monkeypatch, capsys):
    """`--all --task T` profiles whatever the registry lists for T (restricted here to three models: every
    model's counts are covered by test_every_registered_model_has_every_operator_counted)."""
    from alignbench.bench.cli import main

    everything = models.list_models
    chosen = {"rt_fpn_r18", "rt_fapn_r18", "sfnet_r18_fcn"}
    monkeypatch.setattr(models, "list_models", lambda task=None: [i for i in everything(task) if i.name in chosen])
    assert main(["profile", "--all", "--task", "semantic", "--input", "64x128", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in rows} == chosen
    assert all(row["uncounted_ops"] == {} and row["latency"] is None for row in rows)
    fapn = next(row for row in rows if row["name"] == "rt_fapn_r18")
    assert math.isclose(fapn["params_m"], models.measured_params("rt_fapn_r18") / 1e6)
