"""The registered models of SFNet's Cityscapes tables (Li et al., ECCV 2020).

Table 1 (ablations, Cityscapes val, ResNet-18 unless stated): (a) baselines, (b) FAM positions, (c) context
modules, (d) backbones (each "FPN + PPM" baseline and its "w/ FAM" model); Table 2: (b) FAM kernel size,
(d) DCN in place of FAM; Tables 3 / 4: the main models. A model that appears in several rows is registered
once, under its first table row, and its description names the others.

Paper numbers: `paper_params_m` where a table gives "#Params" (Tables 3, 4), `paper_gflops` where it gives
"#GFLOPs" (Tables 1(c), 1(d), 2(b), 4; multiply-accumulates, counted at 1024 x 1024 per Table 4's footnote;
Tables 1(c), 1(d) and 2(b) do not state their input size, we assume the same). All with 19 classes and no
deep-supervision heads.

Measured against the paper (parameters: exact counts, `alignbench models --params`):
- SFNet R18: 12,869,715 = 12.87M (Tables 3, 4), exact; R101: 50,317,267 = 50.32M (Table 4), exact.
- SFNet(DF1) 8.42M vs 9.03M (-6.7%) and SFNet(DF2) 17.88M vs 10.53M (+70%), Table 3: the DF1 / DF2
  networks are rebuilt from the authors' code (models/backbones/dfnet.py) with its SFNet head (fpn_dim 64);
  that code's DF2 alone has 17.5M parameters, so the paper's 10.53M must come from a different DF2
  definition than the released one; we do not change layers to reach the number.
- GMACs (fvcore, models at 1024 x 1024): R18 121.7 vs 123.5 (-1.4%), R50 332.1 / 328.1 vs 337.1 / 332.6,
  R101 409.7 / 405.7 vs 417.5 / 412.7 (about -1.5% throughout). FAM costs 4.0 GMACs with R50 / R101
  against the paper's 4.5 / 4.8. Table 2(b)'s kernel sizes change our MACs by only 0.3-0.9 G (a 2-channel
  flow conv), not by the paper's 3-17 G, and Table 1(c)'s NL / ASPP / DenseASPP rows (+15 to +25 G over PPM)
  cannot come from a context module at stride 32 (ours add 0.1-1.8 G): those GFLOPs columns are recorded
  as printed, not reproduced.
- ShuffleNetV2: fpn_dim 64 (like the authors' other light backbone, DFNet) gives 16.8 / 16.4 GMACs vs the
  paper's 18.1 / 17.8 with the same +0.3 G for FAM; fpn_dim 128 would give 56.6 GMACs.
"""

from __future__ import annotations

from functools import partial

from alignbench.models.registry import ModelInfo, register_model
from alignbench.models.sfnet.model import build_sfnet

CITYSCAPES = (1024, 2048)
FLOPS_SIZE = (1024, 1024)
BACKBONES = {"resnet18": "R18", "resnet50": "R50", "resnet101": "R101", "shufflenetv2": "ShuffleNetV2 1.0x",
             "df1": "DF1", "df2": "DF2"}


def _sfnet(
    name: str,
    table: str,
    row: str,
    text: str,
    *,
    params: float | None = None,
    gflops: float | None = None,
    **options,
) -> None:
    """Register an SFNet-family model: `build_sfnet` with `options` fixed (other options stay overridable)."""
    backbone = options.get("backbone", "resnet18")
    align = options.get("align", "fam")
    head = options.get("head", "fusion")
    info = ModelInfo(
        name=name,
        task="semantic",
        paper="SFNet",
        table=table,
        row=row,
        paper_params_m=params,
        input_size=CITYSCAPES,
        description=text,
        backbone=BACKBONES[backbone],
        neck="none" if head == "fcn" else {"fam": "AlignedFPN (FAM)", "dcn": "AlignedFPN (DCN)", "none": "FPN"}[align],
        head="conv3x3-BN-ReLU + 1x1 on C5" if head == "fcn" else f"SFNet fusion + {options.get('context', 'ppm')}",
        paper_gflops=gflops,
        flops_input_size=FLOPS_SIZE,  # SFNet counts GFLOPs at 1024 x 1024 (Table 4), for rows without a figure too
    )
    register_model(info, partial(build_sfnet, **options))


# Tables 3 / 4: the main models.
_sfnet("sfnet_r18", "Table 4", "SFNet / ResNet-18",
       "SFNet R18 (deep stem, fpn_dim 128, PPM, FAM at F3-F5); also Table 3 SFNet(ResNet-18), Table 1(a) "
       "+FAM + PPM, Table 1(b) F3+F4+F5, Table 1(c) +PPM, Table 2(b) k = 3, Table 2(d) Ours F3-F5",
       params=12.87, gflops=123.5)
_sfnet("sfnet_r101", "Table 4", "SFNet / ResNet-101",
       "SFNet R101 (deep stem, fpn_dim 256); also Table 1(d) ResNet-101 w/ FAM",
       params=50.32, gflops=417.5, backbone="resnet101")
_sfnet("sfnet_df1", "Table 3", "SFNet(DF1)",
       "SFNet on DF1 (authors' code: C3-C5 at strides 16/32/32, fpn_dim 64); also Table 1(d) DF1 w/ FAM; "
       "parameters differ from the paper (module docstring)",
       params=9.03, gflops=18.7, backbone="df1")
_sfnet("sfnet_df2", "Table 3", "SFNet(DF2)",
       "SFNet on DF2 (authors' code, fpn_dim 64); also Table 1(d) DF2 w/ FAM; the released DF2 is larger "
       "than the paper's count (module docstring)",
       params=10.53, gflops=48.5, backbone="df2")

# Table 1(a): baselines on ResNet-18 (no parameters / FLOPs in the paper).
_sfnet("sfnet_r18_fcn", "Table 1(a)", "FCN",
       "FCN-32s baseline: deep-stem ResNet-18 + conv3x3-BN-ReLU (128) + 1x1 classifier on C5", head="fcn")
_sfnet("sfnet_r18_fpn", "Table 1(a)", "+FPN",
       "FPN decoder (bilinear top-down, align_corners=True) with SFNet's fusion head, no context module",
       context="none", align="none")
_sfnet("sfnet_r18_fam", "Table 1(a)", "+FAM",
       "FPN decoder with FAM at F3-F5, no context module; also Table 1(c) row FAM", context="none")
_sfnet("sfnet_r18_fpn_ppm", "Table 1(a)", "+FPN + PPM",
       "FPN decoder with PPM, no FAM: the FPN+PPM baseline of Tables 1(b), 1(d), 2(c), 2(d)", align="none")

# Table 1(b): FAM position (F_l: the upsampling of level l is replaced, producing level l-1).
_sfnet("sfnet_r18_fam_f3", "Table 1(b)", "FPN+PPM, FAM at F3",
       "FAM only where P3 is upsampled into P2", align_levels=("p2",))
_sfnet("sfnet_r18_fam_f4", "Table 1(b)", "FPN+PPM, FAM at F4",
       "FAM only where P4 is upsampled into P3", align_levels=("p3",))
_sfnet("sfnet_r18_fam_f5", "Table 1(b)", "FPN+PPM, FAM at F5",
       "FAM only where the PPM output (F5) is upsampled into P4; also Table 2(d) Ours at F5", align_levels=("p4",))

# Table 1(c): context modules on the FAM decoder.
_sfnet("sfnet_r18_nl", "Table 1(c)", "FAM +NL",
       "FAM decoder with a non-local block as context head (models.sfnet.context.NonLocalContext)",
       gflops=148.0, context="nl")
_sfnet("sfnet_r18_aspp", "Table 1(c)", "FAM +ASPP",
       "FAM decoder with DeepLabv3 ASPP (rates 6/12/18) as context head", gflops=138.6, context="aspp")
_sfnet("sfnet_r18_denseaspp", "Table 1(c)", "FAM +DenseASPP",
       "FAM decoder with DenseASPP (rates 3/6/12/18/24) as context head", gflops=141.5, context="denseaspp")

# Table 1(d): backbones, FPN+PPM baseline and w/ FAM (ResNet-101 w/ FAM is sfnet_r101, DF w/ FAM sfnet_df*).
_sfnet("sfnet_fpn_r50", "Table 1(d)", "ResNet-50",
       "FPN+PPM baseline, deep-stem ResNet-50, fpn_dim 256", gflops=332.6, backbone="resnet50", align="none")
_sfnet("sfnet_r50", "Table 1(d)", "ResNet-50 w/ FAM",
       "SFNet with deep-stem ResNet-50, fpn_dim 256", gflops=337.1, backbone="resnet50")
_sfnet("sfnet_fpn_r101", "Table 1(d)", "ResNet-101",
       "FPN+PPM baseline, deep-stem ResNet-101, fpn_dim 256", gflops=412.7, backbone="resnet101", align="none")
_sfnet("sfnet_fpn_shufflenetv2", "Table 1(d)", "ShuffleNetv2",
       "FPN+PPM baseline, torchvision ShuffleNetV2 1.0x (C5 after conv5), fpn_dim 64",
       gflops=17.8, backbone="shufflenetv2", align="none")
_sfnet("sfnet_shufflenetv2", "Table 1(d)", "ShuffleNetv2 w/ FAM",
       "SFNet with torchvision ShuffleNetV2 1.0x, fpn_dim 64", gflops=18.1, backbone="shufflenetv2")
_sfnet("sfnet_fpn_df1", "Table 1(d)", "DF1",
       "FPN+PPM baseline on DF1 (authors' code), fpn_dim 64", gflops=18.6, backbone="df1", align="none")
_sfnet("sfnet_fpn_df2", "Table 1(d)", "DF2",
       "FPN+PPM baseline on DF2 (authors' code), fpn_dim 64", gflops=48.2, backbone="df2", align="none")

# Table 2(b): FAM flow-conv kernel size (k = 3 is sfnet_r18).
for _k, _gflops in ((1, 120.4), (5, 131.6), (7, 140.5)):
    _sfnet(f"sfnet_r18_k{_k}", "Table 2(b)", f"k = {_k}",
           f"SFNet R18 with a {_k}x{_k} flow conv in its 3 FAMs", gflops=_gflops, flow_kernel_size=_k)

# Table 2(d): DCN in place of FAM.
_sfnet("sfnet_r18_dcn_f5", "Table 2(d)", "DCN at F5",
       "FPN+PPM with a DCN (v1) on concat(upsampled F5, lateral) in place of FAM at F5 only",
       align="dcn", align_levels=("p4",))
_sfnet("sfnet_r18_dcn", "Table 2(d)", "DCN at F3, F4, F5",
       "FPN+PPM with DCN (v1) in place of every FAM", align="dcn")

# Section 3.3's text: FAM also replaces the upsampling before the final concatenation (not the released model).
_sfnet("sfnet_r18_fam_fusion", "Section 3.3", "SFNet / ResNet-18, FAM in the final fusion",
       "SFNet R18 with 3 more FAMs replacing the bilinear upsampling of P3-P5 to 1/4 (the paper's text; "
       "12.93M parameters, the released model and the paper's 12.87M have none)", fusion="fam")
