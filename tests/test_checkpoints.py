"""Checkpoints in the official layouts (SFSegNets, detectron2 .pth / .pkl, MSRA Caffe2 names) and ours.

The tests write their own checkpoints from our models, renamed here to the authors' key layout (SFSegNets
network/sfnet_resnet.py; detectron2 resnet.py / fpn.py / semantic_seg.py, FaPN fan.py), and check that the
outputs survive the round trip, that every tensor is used, and that bad files fail with one clear line.
"""

from __future__ import annotations

import pickle
import re

import pytest
import torch
from alignbench_test_helpers import to_detectron2_pyramid_rules

from alignbench import models
from alignbench.models.backbones import ResNetBackbone
from alignbench.models.checkpoints import CheckpointError

IMAGES = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(0))


def _perturbed(model: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """The model's state with every float tensor moved (so that a wrong mapping changes the output)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            noise = 0.05 * torch.randn(value.shape, generator=generator)
            value = value + noise.abs() if key.endswith("running_var") else value + noise
        state[key] = value
    model.load_state_dict(state)
    return state


def _renamed(state: dict[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            if re.fullmatch(pattern, key):
                key = re.sub(pattern, replacement, key)
                break
        else:
            raise AssertionError(f"no rule for {key}")
        out[key] = value
    return out


# --- SFSegNets ------------------------------------------------------------------------------------------

SFSEGNETS = [  # ours -> the authors' AlignNetResNet keys, levels p2, p3, p4 = index 0, 1, 2
    (r"backbone\.conv1\.(.+)", r"layer0.0.\1"),
    (r"backbone\.bn1\.(.+)", r"layer0.1.\1"),
    (r"backbone\.(layer.+)", r"\1"),
    (r"neck\.context\.(.+)", r"head.ppm.\1"),
    (r"neck\.lateral\.p(\d)\.(.+)", lambda m: f"head.fpn_in.{int(m[1]) - 2}.{m[2]}"),
    (r"neck\.output\.p(\d)\.(.+)", lambda m: f"head.fpn_out.{int(m[1]) - 2}.0.{m[2]}"),
    (r"neck\.align\.p(\d)\.down_coarse\.(.+)", lambda m: f"head.fpn_out_align.{int(m[1]) - 2}.down_h.{m[2]}"),
    (r"neck\.align\.p(\d)\.down_fine\.(.+)", lambda m: f"head.fpn_out_align.{int(m[1]) - 2}.down_l.{m[2]}"),
    (r"neck\.align\.p(\d)\.flow\.(.+)", lambda m: f"head.fpn_out_align.{int(m[1]) - 2}.flow_make.{m[2]}"),
    (r"head\.fuse\.(.+)", r"head.conv_last.0.\1"),
    (r"head\.classifier\.(.+)", r"head.conv_last.1.\1"),
    (r"deep_supervision\.p(\d)\.layers\.(.+)", lambda m: f"head.dsn.{int(m[1]) - 2}.{m[2]}"),
]


@pytest.fixture(scope="module")
def sfnet_with_dsn():
    torch.manual_seed(0)
    model = models.build("sfnet_r18", deep_supervision=True).eval()
    state = _perturbed(model)
    return model, _renamed(state, SFSEGNETS)


def test_sfsegnets_checkpoint_round_trip_with_module_prefix_drops_and_reports_deep_supervision(sfnet_with_dsn, tmp_path):
    source, theirs = sfnet_with_dsn
    path = tmp_path / "sfnet_r18_dsn.pth"
    torch.save({"state_dict": {"module." + key: value for key, value in theirs.items()}, "epoch": 300}, path)
    loaded = models.build("sfnet_r18", checkpoint=path).eval()
    report = loaded.checkpoint_report
    assert report.format == "sfsegnets"
    dsn_keys = {key for key in theirs if key.startswith("head.dsn.")}
    assert set(report.dropped) == dsn_keys and len(dsn_keys) == 3 * 9
    assert report.used + len(report.dropped) == len(theirs)
    with torch.no_grad():
        assert torch.equal(loaded(IMAGES), source(IMAGES))


def test_sfsegnets_bare_state_dict_keeps_deep_supervision_for_a_model_built_with_it(sfnet_with_dsn, tmp_path):
    source, theirs = sfnet_with_dsn
    path = tmp_path / "bare.pth"
    torch.save(theirs, path)
    loaded = models.build("sfnet_r18", checkpoint=path, deep_supervision=True).eval()
    assert loaded.checkpoint_report.dropped == {} and loaded.checkpoint_report.used == len(theirs)
    for name, tensor in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_our_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    source = models.build("sfnet_r18").eval()
    _perturbed(source)
    path = tmp_path / "ours.pth"
    torch.save({"model": source.state_dict()}, path)
    loaded = models.build("sfnet_r18", checkpoint=path).eval()
    assert loaded.checkpoint_report.format == "alignbench"
    with torch.no_grad():
        assert torch.equal(loaded(IMAGES), source(IMAGES))


def _one_line_error(name: str, path, **options) -> str:
    with pytest.raises(CheckpointError) as error:
        models.build(name, checkpoint=path, **options)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    return message


def test_clear_errors_for_wrong_model_truncated_file_missing_key_and_shape_mismatch(sfnet_with_dsn, tmp_path):
    _, theirs = sfnet_with_dsn
    good = tmp_path / "good.pth"
    torch.save({"state_dict": theirs}, good)
    message = _one_line_error("sfnet_r50", good)
    assert "does not fit sfnet_r50" in message and "shape mismatches" in message and "missing" in message

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "cannot read" in _one_line_error("sfnet_r18", truncated)

    missing = tmp_path / "missing.pth"
    torch.save({"state_dict": {k: v for k, v in theirs.items() if k != "head.conv_last.1.bias"}}, missing)
    message = _one_line_error("sfnet_r18", missing)
    assert "1 model tensors missing from the file (first: head.classifier.bias)" in message

    message = _one_line_error("sfnet_r18", good, num_classes=7)
    assert "shape mismatches" in message and "head.classifier.weight (19, 128, 1, 1) vs (7, 128, 1, 1)" in message

    assert "loads only alignbench" in _one_line_error("pointrend_fpn_r50", good)
    assert "no such file" in _one_line_error("sfnet_r18", tmp_path / "absent.pth")


# --- SFNet as the authors' code computes it ---------------------------------------------------------------


def test_sfnet_default_has_the_released_resnet_d_dilation_and_the_paper_variant_none():
    with torch.device("meta"):
        code = models.build("sfnet_r18")
        paper = models.build("sfnet_r18", dilation="paper")
    for layer, dilation in (("layer3", 2), ("layer4", 4)):
        for block in getattr(code.backbone, layer):
            assert block.conv2.dilation == (dilation, dilation) and block.conv2.padding == (dilation, dilation)
            assert block.conv1.dilation == (1, 1)
        assert getattr(code.backbone, layer)[0].conv1.stride == (2, 2)  # strides kept
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        assert all(block.conv2.dilation == (1, 1) for block in getattr(paper.backbone, layer))
    assert models.count_parameters(code) == models.count_parameters(paper)


def test_sfnet_runs_an_odd_size_input_without_padding():
    torch.manual_seed(0)
    model = models.build("sfnet_r18").eval()
    images = torch.rand(1, 3, 65, 97)
    assert model.preprocess(images).shape == images.shape  # nothing padded
    with torch.no_grad():
        assert model(images).shape == (1, 19, 65, 97)


# --- detectron2 (FaPN's PointRend semantic releases) --------------------------------------------------------


def _detectron2_rules(model) -> list:
    def scale_head(match):
        level, index, rest = match[1], int(match[2]), match[3]
        layers = model.head.coarse_head.scale_heads[level]
        conv = index if isinstance(layers[index], torch.nn.Conv2d) else index - 1
        step = 4 if any(isinstance(layer, torch.nn.Upsample) for layer in layers) else 3
        theirs = (conv // step) * (2 if step == 4 else 1)
        return f"sem_seg_head.coarse_sem_seg_head.{level}.{theirs}." + (rest if conv == index else f"norm.{rest}")

    return [
        *to_detectron2_pyramid_rules(model, "backbone", "neck"),
        (r"head\.coarse_head\.scale_heads\.(p\d)\.(\d+)\.(.+)", scale_head),
        (r"head\.coarse_head\.predictor\.(.+)", r"sem_seg_head.coarse_sem_seg_head.predictor.\1"),
        (r"head\.point_head\.fc_layers\.(\d)\.(.+)", lambda m: f"sem_seg_head.point_head.fc{int(m[1]) + 1}.{m[2]}"),
        (r"head\.point_head\.predictor\.(.+)", r"sem_seg_head.point_head.predictor.\1"),
    ]


SMALL = {"neck_channels": 32, "head_channels": 32, "point_fc_dim": 32}


@pytest.mark.parametrize("name", ["pointrend_fapn_r50", "pointrend_fpn_r50"])
@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_detectron2_semantic_checkpoint_round_trip(name, suffix, tmp_path):
    torch.manual_seed(0)
    source = models.build(name, backbone_style="detectron2", **SMALL).eval()
    theirs = _renamed(_perturbed(source), _detectron2_rules(source))
    path = tmp_path / f"model_final{suffix}"
    if suffix == ".pkl":
        with path.open("wb") as handle:
            pickle.dump({"model": {k: v.numpy() for k, v in theirs.items()}, "__author__": "test"}, handle)
    else:
        torch.save({"model": {**theirs, "pixel_mean": torch.zeros(3, 1, 1)}, "iteration": 65000}, path)
    loaded = models.build(name, checkpoint=path, **SMALL).eval()  # the format chooses detectron2's ResNet
    report = loaded.checkpoint_report
    assert report.format == "detectron2" and report.used == len(theirs)
    assert set(report.dropped) == (set() if suffix == ".pkl" else {"pixel_mean"})
    assert loaded.backbone.style == "detectron2" and loaded.input_bgr
    assert loaded.backbone.layer3[0].conv1.stride == (2, 2) and loaded.backbone.layer3[0].conv2.stride == (1, 1)
    with torch.no_grad():
        assert torch.equal(loaded(IMAGES), source(IMAGES))


def test_detectron2_input_is_bgr_0_255_minus_pixel_mean():
    with torch.device("meta"):
        model = models.build("pointrend_fpn_r50", backbone_style="detectron2", **SMALL)
    model = model.to_empty(device="cpu")
    model.use_detectron2_input()
    image = torch.zeros(1, 3, 32, 32)
    image[:, 0] = 1.0  # pure red
    x = model.preprocess(image)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([-103.530, -116.280, 255.0 - 123.675]))


# --- ImageNet backbones -------------------------------------------------------------------------------------


def test_msra_caffe2_pickle_loads_into_the_detectron2_style_resnet(tmp_path):
    torch.manual_seed(0)
    source = ResNetBackbone(50, style="detectron2").eval()
    state = _perturbed(source)
    for key in state:  # Caffe2 BatchNorm is an affine scale / bias: statistics 0 / 1
        if key.endswith("running_mean"):
            state[key] = torch.zeros_like(state[key])
        elif key.endswith("running_var"):
            state[key] = torch.ones_like(state[key])
    source.load_state_dict(state)
    branch = {"1": "2a", "2": "2b", "3": "2c"}
    caffe2 = {"fc1000_w": torch.zeros(1000, 2048).numpy(), "fc1000_b": torch.zeros(1000).numpy()}
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var")):
            continue
        param = "w" if key.endswith("weight") and ("conv" in key or "downsample.0" in key) else ("s" if key.endswith("weight") else "b")
        if key.startswith("conv1."):
            name = "conv1_w"
        elif key.startswith("bn1."):
            name = f"res_conv1_bn_{param}"
        else:
            layer, index, module = re.fullmatch(r"layer(\d)\.(\d+)\.(.+)\.\w+", key).groups()
            stem = f"res{int(layer) + 1}_{index}_branch"
            if module.startswith("downsample"):
                name = f"{stem}1_{param}" if module.endswith("0") else f"{stem}1_bn_{param}"
            else:
                name = f"{stem}{branch[module[-1]]}_{param}" if module.startswith("conv") else f"{stem}{branch[module[-1]]}_bn_{param}"
        caffe2[name] = value.numpy()
    path = tmp_path / "R-50.pkl"
    with path.open("wb") as handle:
        pickle.dump(caffe2, handle)
    loaded = ResNetBackbone(50, weights=path).eval()  # .pkl: detectron2's style and frozen BN chosen
    assert loaded.style == "detectron2" and loaded.frozen_bn
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for name, feature in source(images).items():
            assert torch.equal(loaded(images)[name], feature), name


def test_backbone_weights_reach_the_sfnet_builder(tmp_path):
    torch.manual_seed(0)
    backbone = ResNetBackbone(18, deep_stem=True, frozen_bn=False)
    _perturbed(backbone)
    path = tmp_path / "resnet18-deep-inplane128.pth"
    torch.save({"module." + k: v for k, v in backbone.state_dict().items()}, path)
    model = models.build("sfnet_r18", backbone_weights=path)
    assert torch.equal(model.backbone.conv1[0].weight, backbone.conv1[0].weight)
    assert isinstance(model.backbone.bn1, torch.nn.BatchNorm2d)  # SFNet trains BN
