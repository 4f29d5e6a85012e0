"""The registered detection, instance and panoptic segmentation models of FaPN's and FPT's COCO tables.

FaPN Table 3 (object detection, Faster R-CNN), Table 5 (instance segmentation, Mask R-CNN) and Table 6
(panoptic segmentation, Panoptic FPN), each FPN vs FaPN with ResNet-50 / ResNet-101, all on MS COCO val.
The tables state no parameter counts (`paper_params_m` None); `alignbench models --params` lists the
measured ones. Not registered: Table 5's PointRend mask-head rows (no PointRend mask head here) and
Table 6's PanopticFCN rows (a different architecture).

Builder options (models.build overrides): min_size / max_size (torchvision's resize, COCO's 800 / 1333 by
default), rcnn_options (further torchvision FasterRCNN / MaskRCNN keywords), neck_channels,
backbone_weights, frozen_bn, freeze_stem, backbone_style ("detectron2" for detectron2's ResNet, chosen
automatically for detectron2 checkpoints), detectron2_ops (detectron2's input, anchors, RoIAlignV2 and
mask pasting; default: on with that style, models.detection.detectron2_ops); panoptic models also
num_stuff_classes, semantic_channels, semantic_loss_weight, overlap_threshold, stuff_area_limit,
score_threshold. `num_classes` counts object (thing) categories
without the background.

Also FPT's Tables 1-3 (Mask R-CNN with FPT on the bottom-up feature pyramid; bottom of this file).

Adding a neck: one `_entry(...)` line per row with its neck class; the class is called as
neck(backbone_channels, 256, top_block=True, **options) and must return p2..p6.
"""

from __future__ import annotations

from functools import partial

from alignbench.models.detection.panoptic import build_panoptic_fpn
from alignbench.models.detection.rcnn import build_detector
from alignbench.models.fapn.neck import FaPN
from alignbench.models.fpn import FPN
from alignbench.models.fpt.transformer import FPT
from alignbench.models.registry import ModelInfo, register_model

COCO = (800, 1333)  # torchvision's / detectron2's COCO test size: short side 800, long side at most 1333

_ARCHITECTURES = {
    # task: (table, method label printed in the table, head description, builder)
    "detection": ("Table 3", "Faster R-CNN", "Faster R-CNN (RPN + 2fc box head)", partial(build_detector, kind="faster")),
    "instance": ("Table 5", "Mask R-CNN", "Mask R-CNN (2fc box head + 4conv mask head)", partial(build_detector, kind="mask")),
    "panoptic": ("Table 6", "PanopticFPN", "Panoptic FPN (Mask R-CNN + Semantic-FPN stuff branch)", build_panoptic_fpn),
}


def _entry(
    name: str,
    task: str,
    method: str,
    depth: int,
    neck,
    options: dict,
    text: str,
    *,
    paper: str = "FaPN",
    table: str | None = None,
    params: float | None = None,
    gflops: float | None = None,
) -> None:
    """Register one row: `method` is the table's first column ("FPN" or "FaPN (ours)"); `table` defaults to
    the FaPN table of the task."""
    default_table, architecture, head, builder = _ARCHITECTURES[task]
    info = ModelInfo(
        name=name,
        task=task,
        paper=paper,
        table=table or default_table,
        row=f"{method} / {architecture} R{depth}",
        paper_params_m=params,
        input_size=COCO,
        description=text,
        backbone=f"R{depth}",
        neck=neck.__name__,
        head=head,
        paper_gflops=gflops,
    )
    register_model(info, partial(builder, depth=depth, neck=neck, neck_options=options))


_FAPN = {"lateral": "fsm", "align": "fam"}

for _depth in (50, 101):
    _entry(f"faster_rcnn_fpn_r{_depth}", "detection", "FPN", _depth, FPN, {},
           f"Faster R-CNN with ResNet-{_depth} and FPN (P2-P6, P6 by max-pool)")
    _entry(f"faster_rcnn_fapn_r{_depth}", "detection", "FaPN (ours)", _depth, FaPN, _FAPN,
           f"Faster R-CNN with ResNet-{_depth} and FaPN (FSM + FAM, P6 by max-pool)")
for _depth in (50, 101):
    _entry(f"mask_rcnn_fpn_r{_depth}", "instance", "FPN", _depth, FPN, {},
           f"Mask R-CNN with ResNet-{_depth} and FPN")
    _entry(f"mask_rcnn_fapn_r{_depth}", "instance", "FaPN (ours)", _depth, FaPN, _FAPN,
           f"Mask R-CNN with ResNet-{_depth} and FaPN")
for _depth in (50, 101):
    _entry(f"panoptic_fpn_r{_depth}", "panoptic", "FPN", _depth, FPN, {},
           f"Panoptic FPN with ResNet-{_depth} and FPN")
    _entry(f"panoptic_fapn_r{_depth}", "panoptic", "FaPN (ours)", _depth, FaPN, _FAPN,
           f"Panoptic FPN with ResNet-{_depth} and FaPN")

# FPT (Zhang et al., ECCV 2020) Tables 1-3: Mask R-CNN on the bottom-up feature pyramid (BFP, the backbone
# maps after 1x1 laterals, see models.fpt.transformer.FPT) with the transformers of each row; global GT (the
# locality-constrained GT is for segmentation only, FPT section 3.3); ST N = 2, GT N = 4. Table 1's rows
# use SBN and DropBlock (block 5, keep 0.9): its full-FPT row repeats Table 2's "FPT + SBN + DropBlock".
# Paper params / GFLOPs (Table 1) are Mask R-CNN R50's at an input size the paper does not state.
_FPT_TABLE_1 = (
    # (name suffix, method, transformers, paper params (M), paper GFLOPs)
    ("bfp", "BFP", (), 34.6, 172.3),
    ("bfp_st", "BFP + ST", ("st",), 55.0, 248.2),
    ("bfp_gt", "BFP + GT", ("gt",), 63.9, 265.1),
    ("bfp_rt", "BFP + RT", ("rt",), 39.8, 187.9),
    ("bfp_st_gt", "BFP + ST + GT", ("st", "gt"), 82.5, 322.9),
    ("bfp_st_rt", "BFP + ST + RT", ("st", "rt"), 61.2, 256.7),
    ("bfp_gt_rt", "BFP + GT + RT", ("gt", "rt"), 69.6, 281.6),
    ("fpt", "BFP + ST + GT + RT (FPT)", ("st", "gt", "rt"), 88.2, 346.2),
)
for _suffix, _method, _transformers, _params, _gflops in _FPT_TABLE_1:
    _entry(f"mask_rcnn_{_suffix}_r50", "instance", _method, 50, FPT,
           {"transformers": _transformers, "norm": "bn", "dropblock_size": 5},
           f"Mask R-CNN with ResNet-50 and {_method} (SBN, DropBlock)",
           paper="FPT", table="Table 1", params=_params, gflops=_gflops)
# Table 2: the full FPT without SBN and / or DropBlock (with both it is mask_rcnn_fpt_r50).
_entry("mask_rcnn_fpt_plain_r50", "instance", "FPT", 50, FPT, {"norm": None, "dropblock_size": None},
       "Mask R-CNN R50 + FPT without SBN and DropBlock", paper="FPT", table="Table 2")
_entry("mask_rcnn_fpt_sbn_r50", "instance", "FPT + SBN", 50, FPT, {"norm": "bn", "dropblock_size": None},
       "Mask R-CNN R50 + FPT with SBN, without DropBlock", paper="FPT", table="Table 2")
_entry("mask_rcnn_fpt_dropblock_r50", "instance", "FPT + DropBlock", 50, FPT, {"norm": None, "dropblock_size": 5},
       "Mask R-CNN R50 + FPT with DropBlock, without SBN", paper="FPT", table="Table 2")
# Table 3 (test-dev): ResNet-101 BFP and BFP + FPT (BFP + FPN is mask_rcnn_fpn_r101).
_entry("mask_rcnn_bfp_r101", "instance", "BFP", 101, FPT, {"transformers": ()},
       "Mask R-CNN with ResNet-101 and the bare BFP", paper="FPT", table="Table 3")
_entry("mask_rcnn_fpt_r101", "instance", "BFP+FPT", 101, FPT, {"norm": "bn", "dropblock_size": 5},
       "Mask R-CNN with ResNet-101 and FPT (SBN, DropBlock)", paper="FPT", table="Table 3")
