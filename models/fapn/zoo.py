"""The registered models of FaPN's semantic segmentation tables.

FaPN Table 1 (ablation, Cityscapes val, PointRend semantic head, R50 unless stated) and Table 4
(FPN vs FaPN, R50 / R101); FaPN supplementary Table I (real-time ablation, ResNet-18, 768x1536, the
setting of the Table 8 row "FaPN R18 768x1536" whose val mIoU 75.6 it repeats) and Table 8 (R34).
Parameter counts are the tables' "#Params (M)" with 19 classes; None where the paper states none.
"""

from __future__ import annotations

from functools import partial

from alignbench.models.fapn.neck import FaPN
from alignbench.models.fapn.realtime import RealTimeFaPN, build_realtime_segmenter
from alignbench.models.fpn import FPN
from alignbench.models.registry import ModelInfo, register_model
from alignbench.models.segmentation import build_pyramid_segmenter

CITYSCAPES = (1024, 2048)


def _pointrend(
    name: str, table: str, row: str, params: float | None, depth: int, neck, options: dict, text: str
) -> None:
    """Register a ResNet + `neck` + PointRend semantic model (FaPN Tables 1 and 4)."""
    info = ModelInfo(
        name=name,
        task="semantic",
        paper="FaPN",
        table=table,
        row=row,
        paper_params_m=params,
        input_size=CITYSCAPES,
        description=text,
        backbone=f"R{depth}",
        neck=neck.__name__,
        head="PointRend",
    )
    register_model(info, partial(build_pyramid_segmenter, depth=depth, neck=neck, neck_options=options))


def _realtime(
    name: str, table: str, row: str, params: float | None, depth: int, size: tuple[int, int], options: dict, text: str
) -> None:
    """Register a real-time FaPN variant (FaPN supplementary Table I, main-paper Table 8)."""
    info = ModelInfo(
        name=name,
        task="semantic",
        paper="FaPN",
        table=table,
        row=row,
        paper_params_m=params,
        input_size=size,
        description=text,
        backbone=f"R{depth}",
        neck="RealTimeFaPN",
        head="conv3x3-BN-ReLU + 1x1 on P3",
    )
    register_model(info, partial(build_realtime_segmenter, depth=depth, neck=RealTimeFaPN, neck_options=options))


_pointrend("pointrend_fpn_r50", "Table 1", "FPN / R50", 28.6, 50, FPN, {},
           "FPN (lateral 1x1, output 3x3, nearest 2x) with the PointRend semantic head; also Table 4 FPN R50")
_pointrend("pointrend_fpn_extra_conv_r50", "Table 1", "FPN + extra 3×3 conv. / R50", 33.4, 50, FPN,
           {"extra_output_convs": 2},
           "FPN with two extra 3x3 convs before each level's output conv (count inferred from 33.4M)")
_pointrend("pointrend_fpn_r101", "Table 1", "FPN / R101", 47.6, 101, FPN, {},
           "FPN with ResNet-101; also Table 4 FPN R101")
_pointrend("pointrend_fpn_fam_r50", "Table 1", "FPN + FAM / R50", 31.7, 50, FaPN,
           {"lateral": "conv", "align": "fam"},
           "FaPN layout with FAM, FPN's 1x1 lateral convs instead of FSM")
_pointrend("pointrend_fpn_fam_se_r50", "Table 1", "FPN + FAM + SE / R50", 33.1, 50, FaPN,
           {"lateral": "se", "align": "fam"},
           "FAM with SE laterals (FSM without its skip connection)")
_pointrend("pointrend_fapn_r50", "Table 1", "FPN + FAM + FSM (FaPN) / R50", 33.1, 50, FaPN,
           {"lateral": "fsm", "align": "fam"},
           "FaPN (FSM + FAM) with the PointRend semantic head; also Table 4 FaPN R50")
_pointrend("pointrend_fpn_deconv_fsm_r50", "Table 1", "FPN + deconv + FSM / R50", 32.7, 50, FaPN,
           {"lateral": "fsm", "align": "deconv"},
           "FSM laterals, 4x4 stride-2 deconvolution instead of upsampling + FAM")
_pointrend("pointrend_fpn_fam_after_fusion_fsm_r50", "Table 1", "FPN + FAM† + FSM / R50", 32.7, 50, FaPN,
           {"lateral": "fsm", "align": "fam_after_fusion"},
           "FSM laterals, FAM placed after the sum fusion (offsets from the fused map)")
_pointrend("pointrend_fapn_r101", "Table 4", "FaPN (ours) / R101", None, 101, FaPN,
           {"lateral": "fsm", "align": "fam"},
           "FaPN with ResNet-101 and the PointRend semantic head")

_realtime("rt_fpn_r18", "Table I", "FPN", 11.4, 18, (768, 1536),
          {"lateral": "conv", "align": False, "fuse": "sum"},
          "real-time baseline: ResNet-18 C3..C5, 128-channel FPN (1x1 laterals, nearest 2x, sum)")
_realtime("rt_fpn_fam_r18", "Table I", "+ FAM", 12.2, 18, (768, 1536),
          {"lateral": "conv", "align": True, "fuse": "sum"},
          "real-time FPN with FAM on the upsampled maps")
_realtime("rt_fpn_fam_fsm_r18", "Table I", "+ FAM + FSM", 12.6, 18, (768, 1536),
          {"lateral": "fsm", "align": True, "fuse": "sum"},
          "real-time FPN with FAM and FSM laterals, sum fusion")
_realtime("rt_fapn_r18", "Table I", "+ FAM + FSM + Concat", 12.6, 18, (768, 1536),
          {"lateral": "fsm", "align": True, "fuse": "concat"},
          "real-time FaPN (FSM, FAM, concat + 1x1); also Table 8 FaPN R18 768x1536")
_realtime("rt_fapn_r34", "Table 8", "FaPN / R34 / 1024 × 2048", None, 34, CITYSCAPES,
          {"lateral": "fsm", "align": True, "fuse": "concat"},
          "real-time FaPN with ResNet-34")
