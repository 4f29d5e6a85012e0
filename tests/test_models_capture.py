"""models.capture: what alignment modules report, without changing outputs, only inside the `with`."""

import torch
import torch.nn.functional as F

from alignbench import models
from alignbench.models.capture import AlignmentModule


def build(name, **extra):
    torch.manual_seed(0)
    options = {"depth": 18, "neck_channels": 32, "head_channels": 32} if name.startswith("pointrend_") else {
        "neck_channels": 32, "head_channels": 32}
    return models.build(name, **options, **extra).eval()


def test_fapn_reports_every_level_without_changing_outputs():
    model = build("pointrend_fapn_r50")
    images = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        plain = model(images)
        with models.capture(model) as record:
            captured = model(images)
    assert torch.equal(plain, captured)
    assert sorted(record) == ["p2", "p3", "p4"]
    sizes = {"p2": (16, 24), "p3": (8, 12), "p4": (4, 6)}
    for level, (h, w) in sizes.items():
        tensors = record[level]
        assert set(tensors) == {"upsampled", "reference", "aligned", "offset", "mask"}
        assert tensors["upsampled"].shape == (2, 32, h, w)
        assert tensors["aligned"].shape == (2, 32, h, w)
        assert tensors["offset"].shape == (2, 2 * 8 * 9, h, w)
        assert tensors["mask"].shape == (2, 8 * 9, h, w)
        assert record.module_names[level] == f"neck.align.{level}"
    # at initialisation: zero offsets, masks 0.5; aligned = relu(DCN(upsampled))
    assert torch.count_nonzero(record["p2"]["offset"]) == 0 and torch.all(record["p2"]["mask"] == 0.5)
    assert torch.all(record["p2"]["aligned"] >= 0)


def test_upsampled_input_is_the_bilinear_upsampling_of_the_coarser_level():
    model = build("pointrend_fapn_r50")
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad(), models.capture(model) as record:
        model(images)
        x = model.preprocess(images)
        features = model.backbone(x)
        p3_merged = record["p3"]["aligned"] + record["p3"]["reference"]
    expected = F.interpolate(p3_merged, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(record["p2"]["upsampled"], expected)
    torch.testing.assert_close(record["p2"]["reference"], model.neck.lateral["p2"](features["c2"]))


def test_nothing_is_recorded_outside_the_with_block():
    model = build("pointrend_fapn_r50")
    with torch.no_grad():
        with models.capture(model) as record:
            model(torch.rand(1, 3, 64, 64))
        kept = record["p2"]["upsampled"].clone()
        model(torch.rand(1, 3, 64, 64))
    assert torch.equal(record["p2"]["upsampled"], kept)
    assert all(not module._capture_sinks for module in model.modules() if isinstance(module, AlignmentModule))


def test_capture_records_the_training_path_and_keeps_gradients_intact():
    model = build("pointrend_fapn_r50", train_num_points=64).train()
    images, targets = torch.rand(1, 3, 64, 64), torch.randint(0, 19, (1, 64, 64))
    torch.manual_seed(5)
    plain = sum(model.loss(images, targets).values())
    torch.manual_seed(5)
    with models.capture(model) as record:
        captured = sum(model.loss(images, targets).values())
    torch.testing.assert_close(plain, captured)
    captured.backward()
    assert not record["p2"]["aligned"].requires_grad


def test_real_time_and_post_fusion_variants_report_their_levels():
    model = build("rt_fapn_r18")
    with torch.no_grad(), models.capture(model) as record:
        model(torch.rand(1, 3, 64, 64))
    assert sorted(record) == ["p3", "p4"] and record["p3"]["upsampled"].shape == (1, 32, 8, 8)
    up = record["p3"]["upsampled"]
    torch.testing.assert_close(up[..., ::2, ::2], up[..., 1::2, 1::2])  # nearest 2x upsampling
    model = build("pointrend_fpn_fam_after_fusion_fsm_r50")
    with torch.no_grad(), models.capture(model) as record:
        model(torch.rand(1, 3, 64, 64))
    assert "fused" in record["p2"]


def test_models_without_alignment_record_nothing_and_captures_nest():
    fpn = build("pointrend_fpn_r50")
    with torch.no_grad(), models.capture(fpn) as record:
        fpn(torch.rand(1, 3, 64, 64))
    assert len(record) == 0
    fapn = build("rt_fapn_r18")
    with torch.no_grad(), models.capture(fapn) as outer, models.capture(fapn) as inner:
        fapn(torch.rand(1, 3, 64, 64))
    assert sorted(outer) == sorted(inner) == ["p3", "p4"]
