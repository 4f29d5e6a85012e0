"""ResNet backbones: feature names / strides / channels, BatchNorm freezing, local weights."""

import pytest
import torch
import torchvision
from torchvision.ops import FrozenBatchNorm2d

from alignbench.models.backbones import BackboneWeightsError, ResNetBackbone


@pytest.mark.parametrize(
    "depth, channels",
    [(18, (64, 128, 256, 512)), (34, (64, 128, 256, 512)), (50, (256, 512, 1024, 2048)), (101, (256, 512, 1024, 2048))],
)
def test_channels_and_strides(depth, channels):
    with torch.device("meta"):
        backbone = ResNetBackbone(depth)
    assert backbone.out_channels == dict(zip(("c2", "c3", "c4", "c5"), channels))
    assert backbone.strides == {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
    assert not hasattr(backbone, "fc")


def test_forward_returns_c2_to_c5_for_odd_sizes():
    torch.manual_seed(0)
    backbone = ResNetBackbone(18).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 65, 97))
    assert list(features) == ["c2", "c3", "c4", "c5"]
    assert [tuple(f.shape[-2:]) for f in features.values()] == [(17, 25), (9, 13), (5, 7), (3, 4)]
    assert [f.shape[1] for f in features.values()] == [64, 128, 256, 512]


def test_batchnorm_frozen_with_weights_trainable_without(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    assert isinstance(ResNetBackbone(18, weights=path).bn1, FrozenBatchNorm2d)
    assert isinstance(ResNetBackbone(18).bn1, torch.nn.BatchNorm2d)
    frozen = ResNetBackbone(18, frozen_bn=True)
    assert isinstance(frozen.layer3[0].bn2, FrozenBatchNorm2d)
    assert not any("bn" in name for name, _ in frozen.named_parameters())
    assert isinstance(ResNetBackbone(18, frozen_bn=False, weights=path).bn1, torch.nn.BatchNorm2d)


def test_freeze_stem():
    backbone = ResNetBackbone(18, freeze_stem=True, frozen_bn=False)
    assert not backbone.conv1.weight.requires_grad and not backbone.bn1.weight.requires_grad
    assert backbone.layer1[0].conv1.weight.requires_grad
    assert ResNetBackbone(18).conv1.weight.requires_grad


def test_loads_local_torchvision_state_dict(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18()
    with torch.no_grad():  # non-trivial BN statistics so that loading them is visible
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)  # includes fc.* and num_batches_tracked
    backbone = ResNetBackbone(18, weights=path).eval()
    torch.testing.assert_close(backbone.layer2[0].conv1.weight, reference.layer2[0].conv1.weight)
    torch.testing.assert_close(backbone.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    reference.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference.layer4(reference.layer3(reference.layer2(reference.layer1(
            reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))))))
        torch.testing.assert_close(backbone(x)["c5"], expected, rtol=1e-4, atol=1e-4)


def test_mismatched_keys_raise_a_clear_error(tmp_path):
    state = torchvision.models.resnet18().state_dict()
    state.pop("layer1.0.conv1.weight")
    state["layer9.extra.weight"] = torch.zeros(1)
    state["layer2.0.conv2.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(BackboneWeightsError) as error:
        ResNetBackbone(18, weights=path)
    message = str(error.value)
    assert "missing keys: layer1.0.conv1.weight" in message
    assert "unexpected keys: layer9.extra.weight" in message
    assert "layer2.0.conv2.weight (3, 3, 3, 3) vs (128, 128, 3, 3)" in message
    assert isinstance(error.value, ValueError)


def test_wrong_depth_file_and_missing_file(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    with pytest.raises(BackboneWeightsError, match="does not fit ResNet-18"):
        ResNetBackbone(18, weights=path)
    with pytest.raises(BackboneWeightsError, match="no such file"):
        ResNetBackbone(18, weights=tmp_path / "absent.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneWeightsError, match="cannot read"):
        ResNetBackbone(18, weights=junk)


def test_weights_reach_the_full_model_through_build(tmp_path):
    from alignbench import models

    path = tmp_path / "r18.pth"
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), path)
    model = models.build("rt_fpn_r18", backbone_weights=str(path), neck_channels=32, head_channels=32)
    torch.testing.assert_close(model.backbone.conv1.weight, reference.conv1.weight)
    assert isinstance(model.backbone.bn1, FrozenBatchNorm2d)
