"""Registry, metadata, parameter counts against FaPN's tables, import hygiene."""

import dataclasses
import subprocess
import sys

import pytest
import torch

from alignbench import models
from alignbench.models.fapn import FaPN
from alignbench.models.fpn import FPN
from alignbench.models.registry import count_parameters

EXPECTED_NAMES = {
    "pointrend_fpn_r50",
    "pointrend_fpn_extra_conv_r50",
    "pointrend_fpn_r101",
    "pointrend_fpn_fam_r50",
    "pointrend_fpn_fam_se_r50",
    "pointrend_fapn_r50",
    "pointrend_fpn_deconv_fsm_r50",
    "pointrend_fpn_fam_after_fusion_fsm_r50",
    "pointrend_fapn_r101",
    "rt_fpn_r18",
    "rt_fpn_fam_r18",
    "rt_fpn_fam_fsm_r18",
    "rt_fapn_r18",
    "rt_fapn_r34",
}

# Exact counts with 19 classes (backbone BatchNorm frozen), pinned so that any change to a layer shows.
# All are within 1% of the paper (FaPN Table 1, supplementary Table I); see each model's docstrings.
MEASURED = {
    "pointrend_fpn_r50": 28_632_678,  # paper 28.6
    "pointrend_fpn_extra_conv_r50": 33_353_318,  # paper 33.4
    "pointrend_fpn_r101": 47_572_582,  # paper 47.6
    "pointrend_fpn_fam_r50": 31_699_694,  # paper 31.7
    "pointrend_fpn_fam_se_r50": 33_075_182,  # paper 33.1
    "pointrend_fapn_r50": 33_075_182,  # paper 33.1
    "pointrend_fpn_deconv_fsm_r50": 32_564_582,  # paper 32.7
    "pointrend_fpn_fam_after_fusion_fsm_r50": 32_681_966,  # paper 32.7
    "pointrend_fapn_r101": 52_015_086,  # paper: not stated
    "rt_fpn_r18": 11_432_147,  # paper 11.4
    "rt_fpn_fam_r18": 12_290_947,  # paper 12.2
    "rt_fpn_fam_fsm_r18": 12_634_627,  # paper 12.6
    "rt_fapn_r18": 12_700_419,  # paper 12.6
    "rt_fapn_r34": 22_801_155,  # paper: not stated
}


def test_every_model_of_the_issue_is_registered():
    names = {info.name for info in models.list_models()}
    assert EXPECTED_NAMES <= names
    semantic = models.list_models(task="semantic")
    assert {info.name for info in semantic} >= EXPECTED_NAMES
    assert all(info.task == "semantic" for info in semantic)
    assert all(info.task == "panoptic" for info in models.list_models(task="panoptic"))


def test_model_info_metadata():
    info = models.get_info("pointrend_fapn_r50")
    assert info.task == "semantic" and info.paper == "FaPN" and info.table == "Table 1"
    assert info.row == "FPN + FAM + FSM (FaPN) / R50"
    assert info.paper_params_m == 33.1 and info.input_size == (1024, 2048)
    realtime = models.get_info("rt_fapn_r18")
    assert realtime.table == "Table I" and realtime.input_size == (768, 1536)
    assert models.get_info("pointrend_fapn_r101").paper_params_m is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "other"


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_parameter_counts_match_the_paper(name):
    measured = models.measured_params(name, num_classes=19)
    assert measured == MEASURED[name]
    paper = models.get_info(name).paper_params_m
    if paper is not None:
        assert abs(measured / 1e6 - paper) / paper < 0.01, (name, measured, paper)


def test_neck_parameter_counts_match_the_official_code():
    """DESIGN.md facts from fan.py: FaPN neck 7.79M, FPN neck 3.34M (R50 channels, 256 out, no norm)."""
    r50 = {"c2": 256, "c3": 512, "c4": 1024, "c5": 2048}
    with torch.device("meta"):
        assert count_parameters(FaPN(r50, 256)) == 7_786_888
        assert count_parameters(FPN(r50, 256)) == 3_344_384


def test_build_returns_model_with_info_and_requested_classes():
    model = models.build("rt_fpn_r18", num_classes=7, neck_channels=32, head_channels=32)
    assert isinstance(model, models.SegmentationModel)
    assert model.model_info.name == "rt_fpn_r18"
    assert model.num_classes == 7
    assert model.head.classifier.out_channels == 7


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="pointrend_fapn_r50"):
        models.build("pointrend_fapn_r5")
    with pytest.raises(ValueError, match="unknown model 'zzz'"):
        models.get_info("zzz")


def test_unknown_override_and_task_are_value_errors():
    with pytest.raises(ValueError, match="neck_chanels: not an option"):
        models.build("rt_fapn_r18", neck_chanels=32)
    with pytest.raises(ValueError, match="task"):
        models.list_models(task="segmentation")
    with pytest.raises(ValueError, match="num_classes"):
        models.build("rt_fapn_r18", num_classes=1)
    with pytest.raises(ValueError, match="depth"):
        models.build("rt_fapn_r18", depth=152)


def test_register_model_rejects_duplicates_and_supports_decorator():
    info = dataclasses.replace(models.get_info("rt_fpn_r18"), name="test_only_duplicate_check")
    from alignbench.models.registry import _REGISTRY

    try:

        @models.register_model(info)
        def builder(num_classes=19, *, width=8):
            return torch.nn.Conv2d(3, num_classes, 1)

        assert models.build("test_only_duplicate_check", num_classes=5).out_channels == 5
        with pytest.raises(ValueError, match="already registered"):
            models.register_model(info, builder)
    finally:
        _REGISTRY.pop("test_only_duplicate_check", None)


def test_import_models_loads_neither_bench_nor_metrics():
    code = (
        "import sys; from alignbench import models; models.list_models(); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('cv2', 'scipy', 'matplotlib', 'pandas') "
        "or m.startswith(('alignbench.bench', 'alignbench.metrics', 'alignbench.reports'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
