"""Detection-family models: registry entries, build and run on the CPU, any neck drops in, no downloads,
parameter counts against torchvision's published ones."""

import json
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

from alignbench import models
from alignbench.bench.cli import main
from alignbench.models.detection import PanopticFPN, RCNNDetector, build_detector
from alignbench.models.fapn import FaPN
from alignbench.models.fpn import FPN
from alignbench.models.registry import count_parameters

NAMES = {
    "detection": {"faster_rcnn_fpn_r50", "faster_rcnn_fapn_r50", "faster_rcnn_fpn_r101", "faster_rcnn_fapn_r101"},
    "instance": {"mask_rcnn_fpn_r50", "mask_rcnn_fapn_r50", "mask_rcnn_fpn_r101", "mask_rcnn_fapn_r101"},
    "panoptic": {"panoptic_fpn_r50", "panoptic_fapn_r50", "panoptic_fpn_r101", "panoptic_fapn_r101"},
}
FPT_NAMES = {
    "mask_rcnn_bfp_r50", "mask_rcnn_bfp_st_r50", "mask_rcnn_bfp_gt_r50", "mask_rcnn_bfp_rt_r50",
    "mask_rcnn_bfp_st_gt_r50", "mask_rcnn_bfp_st_rt_r50", "mask_rcnn_bfp_gt_rt_r50", "mask_rcnn_fpt_r50",
    "mask_rcnn_fpt_plain_r50", "mask_rcnn_fpt_sbn_r50", "mask_rcnn_fpt_dropblock_r50",
    "mask_rcnn_bfp_r101", "mask_rcnn_fpt_r101",
}
# Every registered detection-family model, so that a new entry is covered without editing this file.
# Every registered detection-family paper row (composed scaffold models are covered by tests/test_scaffolds.py).
ALL_NAMES = sorted(info.name for task in NAMES for info in models.list_models(task=task) if info.paper)
R50_CHANNELS = {"c2": 256, "c3": 512, "c4": 1024, "c5": 2048}
SMALL = {"min_size": 64, "max_size": 128}


def test_registered_with_paper_metadata():
    for task, names in NAMES.items():
        assert {info.name for info in models.list_models(task=task)} >= names
    info = models.get_info("faster_rcnn_fapn_r50")
    assert (info.paper, info.table, info.row) == ("FaPN", "Table 3", "FaPN (ours) / Faster R-CNN R50")
    assert info.input_size == (800, 1333) and info.paper_params_m is None and info.neck == "FaPN"
    assert models.get_info("mask_rcnn_fpn_r101").table == "Table 5"
    assert models.get_info("mask_rcnn_fpn_r101").row == "FPN / Mask R-CNN R101"
    assert models.get_info("panoptic_fapn_r101").table == "Table 6"
    assert {info.name for info in models.list_models(task="instance")} >= FPT_NAMES
    fpt = models.get_info("mask_rcnn_fpt_r50")
    assert (fpt.paper, fpt.table, fpt.neck, fpt.paper_params_m, fpt.paper_gflops) == ("FPT", "Table 1", "FPT", 88.2, 346.2)


def test_bare_bfp_is_the_lateral_convs_of_the_fpt_neck():
    """FPT Table 1's baseline: no transformer, so each output is the 1x1 lateral of its backbone map."""
    from alignbench.models.fpt.transformer import FPT

    torch.manual_seed(0)
    neck = FPT(R50_CHANNELS, 32, transformers=(), top_block=True)
    features = OrderedDict((name, torch.rand(1, c, 64 // 2 ** i, 64 // 2 ** i)) for i, (name, c) in enumerate(R50_CHANNELS.items()))
    outputs = neck(features)
    assert list(outputs) == ["p2", "p3", "p4", "p5", "p6"]
    for name in R50_CHANNELS:
        level = "p" + name[1:]
        torch.testing.assert_close(outputs[level], neck.lateral[level](features[name]))
    torch.testing.assert_close(outputs["p6"], torch.nn.functional.max_pool2d(outputs["p5"], 1, stride=2))


def _targets(sizes, num_classes, masks, semantic_classes=None):
    """One box per image (label cycling through the classes), with masks / semantic maps if asked."""
    targets = []
    for index, (height, width) in enumerate(sizes):
        box = torch.tensor([[4.0, 6.0, width / 2, height - 8.0]])
        target = {"boxes": box, "labels": torch.tensor([1 + index % num_classes])}
        if masks:
            mask = torch.zeros(1, height, width, dtype=torch.uint8)
            mask[0, 6 : height - 8, 4 : width // 2] = 1
            target["masks"] = mask
        if semantic_classes is not None:
            semantic = torch.randint(1, semantic_classes + 1, (height, width))
            semantic[mask[0].bool()] = 0
            semantic[:2] = 255
            target["semantic"] = semantic
        targets.append(target)
    return targets


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_model_builds_predicts_and_trains_on_cpu(name):
    torch.manual_seed(0)
    task = models.get_info(name).task
    options = dict(SMALL, rcnn_options={"box_score_thresh": 0.0, "box_detections_per_img": 5})
    if task == "panoptic":
        options.update(num_stuff_classes=4, stuff_area_limit=1, score_threshold=0.0)
    model = models.build(name, num_classes=3, **options)
    assert isinstance(model, RCNNDetector) and model.model_info.name == name
    assert model.with_masks == (task != "detection")
    sizes = [(64, 96), (48, 128)]  # different sizes in one batch
    images = [torch.rand(3, *size) for size in sizes]

    model.eval()
    with torch.no_grad():
        outputs = model.predict(images)
    assert len(outputs) == 2
    for output, (height, width) in zip(outputs, sizes):
        n = len(output["boxes"])
        assert n <= 5 and output["boxes"].shape == (n, 4) and output["scores"].shape == (n,)
        assert output["labels"].dtype == torch.int64 and bool(((output["labels"] >= 1) & (output["labels"] <= 3)).all())
        if n:
            assert float(output["boxes"][:, 2].max()) <= width and float(output["boxes"][:, 3].max()) <= height
        if task == "detection":
            assert "masks" not in output
        else:
            assert output["masks"].shape == (n, height, width)
        if task == "panoptic":
            assert output["semantic"].shape == (height, width) and int(output["semantic"].max()) <= 4
            panoptic, segments = output["panoptic"], output["segments_info"]
            assert panoptic.shape == (height, width) and panoptic.dtype == torch.int32
            assert sorted(set(panoptic.unique().tolist()) - {0}) == [s["id"] for s in segments]

    model.train()
    targets = _targets(sizes, 3, masks=task != "detection", semantic_classes=4 if task == "panoptic" else None)
    losses = model.loss(images, targets)
    expected = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    expected |= {"loss_mask"} if task != "detection" else set()
    expected |= {"loss_sem_seg"} if task == "panoptic" else set()
    assert set(losses) == expected
    assert all(loss.dim() == 0 and bool(torch.isfinite(loss)) for loss in losses.values())


def test_loss_and_predict_take_their_path_whatever_the_mode():
    torch.manual_seed(0)
    model = build_detector(2, kind="faster", depth=18, neck=FPN, neck_channels=64, **SMALL)
    images = torch.rand(1, 3, 64, 64)
    model.eval()
    assert set(model.loss(images, _targets([(64, 64)], 2, masks=False))) >= {"loss_classifier"}
    assert not model.rcnn.rpn.training and not model.rcnn.roi_heads.training  # restored
    model.train()
    with torch.no_grad():
        outputs = model(images)  # forward is predict
    assert isinstance(outputs, list) and set(outputs[0]) == {"boxes", "scores", "labels"}
    assert model.rcnn.roi_heads.training and model.backbone.training


def test_bad_targets_are_value_errors_naming_the_image():
    model = build_detector(2, kind="mask", depth=18, neck=FPN, neck_channels=64, **SMALL)
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    good = _targets([(64, 64)] * 2, 2, masks=True)
    with pytest.raises(ValueError, match=r"targets\[1\]: box .* no positive width"):
        model.loss(images, [good[0], {**good[1], "boxes": torch.tensor([[10.0, 10.0, 10.0, 20.0]])}])
    with pytest.raises(ValueError, match=r"targets\[0\]: labels must be in 1..2"):
        model.loss(images, [{**good[0], "labels": torch.tensor([0])}, good[1]])
    with pytest.raises(ValueError, match=r"targets\[1\]: Mask R-CNN needs 'masks'"):
        model.loss(images, [good[0], {"boxes": good[1]["boxes"], "labels": good[1]["labels"]}])
    with pytest.raises(ValueError, match="1 targets for 2 images"):
        model.loss(images, good[:1])
    with pytest.raises(ValueError, match=r"images\[0\]: expected floats"):
        model.predict([torch.zeros(3, 8, 8, dtype=torch.uint8)])


def test_fapn_drops_in_with_the_same_structure_as_fpn():
    torch.manual_seed(0)
    built = {
        neck: build_detector(3, kind="mask", depth=50, neck=neck, **SMALL)
        for neck in (FPN, FaPN)
    }
    image = torch.rand(1, 3, 64, 96)
    shapes = {}
    for neck, model in built.items():
        model.eval()
        with torch.no_grad():
            features = model.rcnn.backbone(image)
        shapes[neck] = [(level, tuple(feature.shape)) for level, feature in features.items()]
        assert model.rcnn.backbone.out_channels == 256
    assert shapes[FPN] == shapes[FaPN]
    assert [level for level, _ in shapes[FPN]] == ["p2", "p3", "p4", "p5", "p6"]
    # Everything outside the neck is the same module structure with the same parameter shapes.
    def outside_neck(model):
        return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("rcnn.backbone.neck.")}

    assert outside_neck(built[FPN]) == outside_neck(built[FaPN])


class ToyNeck(nn.Module):
    """Stands for any neck class of the interface (e.g. FPT's): in_channels dict, out_channels, strides."""

    def __init__(self, in_channels, out_channels=256, *, top_block=False, levels=("p2", "p3", "p4", "p5")):
        super().__init__()
        self.out_channels = out_channels
        self.top_block = top_block
        self.reduce = nn.ModuleDict({f"p{name[1:]}": nn.Conv2d(c, out_channels, 1) for name, c in in_channels.items()})
        self.levels = tuple(levels)
        self.strides = {level: 2 ** int(level[1:]) for level in self.levels + (("p6",) if top_block else ())}

    def forward(self, features):
        out = OrderedDict((f"p{name[1:]}", self.reduce[f"p{name[1:]}"](x)) for name, x in features.items())
        if self.top_block:
            out["p6"] = torch.nn.functional.max_pool2d(out["p5"], 1, 2)
        return out


def test_any_neck_class_plugs_in_and_a_neck_without_p6_is_refused():
    torch.manual_seed(0)
    model = build_detector(2, kind="faster", depth=18, neck=ToyNeck, neck_channels=32, **SMALL)
    model.eval()
    with torch.no_grad():
        assert set(model.predict(torch.rand(1, 3, 64, 64))[0]) == {"boxes", "scores", "labels"}
    with pytest.raises(ValueError, match=r"ToyNeck produces levels \('p2', 'p3', 'p4', 'p5'\).*top_block=True"):
        build_detector(2, kind="faster", depth=18, neck=ToyNeck, neck_options={"top_block": False}, **SMALL)
    with pytest.raises(ValueError, match="kind"):
        build_detector(2, kind="cascade", depth=18, neck=ToyNeck, **SMALL)


def test_nothing_is_downloaded(monkeypatch):
    """Every builder runs with weights=None on the torchvision ResNet and never reaches torch.hub."""
    import alignbench.models.backbones.resnet as resnet

    def refuse(*args, **kwargs):
        raise AssertionError(f"download attempted: {args} {kwargs}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    calls = []
    for depth, builder in list(resnet._BUILDERS.items()):
        def spy(*args, _builder=builder, **kwargs):
            calls.append(kwargs.get("weights", "missing"))
            return _builder(*args, **kwargs)

        monkeypatch.setitem(resnet._BUILDERS, depth, spy)
    with torch.device("meta"):
        for name in ALL_NAMES:
            models.build(name, num_classes=3)
    assert calls == [None] * len(ALL_NAMES)


def test_parameter_counts_equal_torchvisions_published_r50_fpn_models():
    """With COCO's 90 category ids (91 outputs with the background) our R50-FPN detectors have exactly the
    parameter counts torchvision publishes for fasterrcnn_resnet50_fpn / maskrcnn_resnet50_fpn (weights
    metadata, nothing downloaded): same backbone, FPN layer shapes, anchors, RoI heads."""
    weights = torchvision.models.detection
    assert models.measured_params("faster_rcnn_fpn_r50", num_classes=90) == (
        weights.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["num_params"]  # 41,755,286
    )
    assert models.measured_params("mask_rcnn_fpn_r50", num_classes=90) == (
        weights.MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["num_params"]  # 44,401,393
    )


def test_fapn_adds_exactly_its_neck_difference_and_panoptic_its_semantic_branch():
    with torch.device("meta"):
        neck_difference = count_parameters(FaPN(R50_CHANNELS, 256)) - count_parameters(FPN(R50_CHANNELS, 256))
    assert neck_difference == 7_786_888 - 3_344_384  # DESIGN.md: FaPN neck 7.79M vs FPN neck 3.34M
    for arch in ("faster_rcnn", "mask_rcnn", "panoptic"):
        for depth in (50, 101):
            fpn = models.measured_params(f"{arch}_fpn_r{depth}", num_classes=80)
            fapn = models.measured_params(f"{arch}_fapn_r{depth}", num_classes=80)
            assert fapn - fpn == neck_difference, (arch, depth)
    semantic = models.measured_params("panoptic_fpn_r50", num_classes=80) - models.measured_params(
        "mask_rcnn_fpn_r50", num_classes=80
    )
    with torch.device("meta"):
        model = models.build("panoptic_fpn_r50", num_classes=80)
    assert isinstance(model, PanopticFPN) and semantic == count_parameters(model.semantic_head)
    assert model.semantic_head.predictor.out_channels == 54  # 53 COCO stuff classes + "things"


def test_models_cli_lists_them_with_parameters(capsys):
    for task, names in NAMES.items():
        assert main(["models", "--task", task, "--json", "--params"]) == 0
        rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
        assert set(rows) >= names
        for name in names:
            assert rows[name]["paper_params_m"] is None and rows[name]["params_diff_percent"] is None
            assert rows[name]["params_m"] > 40  # R50 + neck + heads
    assert main(["models", "--task", "detection", "--params"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("faster_rcnn_fapn_r50 "))
    assert "Table 3" in line and "FaPN (ours) / Faster R-CNN R50" in line


def test_gradients_reach_every_parameter_of_panoptic_fpn_with_fapn():
    from alignbench.models.detection import build_panoptic_fpn

    torch.manual_seed(0)
    model = build_panoptic_fpn(
        2, depth=18, neck=FaPN, neck_options={"lateral": "fsm", "align": "fam"}, neck_channels=64,
        num_stuff_classes=3, semantic_channels=32, **SMALL,
    )
    model.train()
    images = [torch.rand(3, 64, 96)]
    losses = model.loss(images, _targets([(64, 96)], 2, masks=True, semantic_classes=3))
    sum(losses.values()).backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_panoptic_fapn_r50_trains_and_predicts_on_cuda():
    torch.manual_seed(0)
    model = models.build("panoptic_fapn_r50", num_classes=3, num_stuff_classes=4, min_size=256, max_size=512).cuda()
    sizes = [(256, 512), (200, 480)]
    images = [torch.rand(3, *size, device="cuda") for size in sizes]
    targets = [
        {key: value.cuda() for key, value in target.items()}
        for target in _targets(sizes, 3, masks=True, semantic_classes=4)
    ]
    model.train()
    losses = model.loss(images, targets)
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)
    model.eval()
    with torch.no_grad():
        outputs = model.predict(images)
    for output, size in zip(outputs, sizes):
        assert output["panoptic"].device.type == "cuda" and output["panoptic"].shape == size
        assert output["masks"].shape[1:] == size
