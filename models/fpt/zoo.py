"""The registered semantic models of FPT Table 4 (Zhang et al., ECCV 2020): UFP and its transformer combinations.

Every row: dilated ResNet-101 (output stride 8) -> UFP (cascaded GCN, kernels 1, 7, 15, 31, 256 channels)
-> FPT block with the row's transformers (ST N=2, LGT N=4 with square_size 5, RT; all pairs of levels;
BatchNorm after its 3x3 convs; DropBlock 3 / 0.9) -> concat head; see models/fpt/model.py, models/fpt/ufp.py and
models/fpt/transformer.py for every interpretation. The full model (UFP+LGT+ST+RT) is also Table 5's "UFP+FPT".
FPT's Mask R-CNN rows (Tables 1-3, the detection neck `models.fpt.transformer.FPT`) are registered with
the other detection models in models/detection/zoo.py.

The paper's parameter counts cannot be reproduced from its text, and we do not fit layers to them
(measured with 19 classes, frozen backbone BN, `alignbench models --params`):

    row               ours (M)  paper (M)
    UFP                 59.84      71.3   (-16%)
    UFP+ST              65.35      91.2   (-28%)
    UFP+LGT             66.93     102.8   (-35%)
    UFP+RT              76.37      77.4   (-1%)
    UFP+LGT+ST          70.08     121.3   (-42%)
    UFP+RT+ST           79.52      96.2   (-17%)
    UFP+LGT+RT          81.09     107.0   (-24%)
    UFP+LGT+ST+RT       84.25     127.2   (-34%)

Why: the paper's increments (+19.9M for ST, +31.5M for LGT, +6.1M for RT over UFP, and +20.4M / +29.3M /
+5.2M in the detection Table 1) make ST and GT, which the text builds from 1x1 query / key / value
transforms (0.2M each at 256 channels), several times larger than RT, which the text builds from three
3x3 convs (1.8M each). No reading of section 3 gives that ordering. UFP itself is not specified beyond its
kernel sizes (models/fpt/ufp.py explains the cascade reading, the closest of the two natural ones).
GFLOPs are recorded as printed; the paper does not state their input size: we assume the 969 x 969
Cityscapes training crop (`flops_input_size`), at which our UFP is about 900 GMACs against 916.1.
"""

from __future__ import annotations

from functools import partial

from alignbench.models.fpt.model import build_ufp_segmenter
from alignbench.models.registry import ModelInfo, register_model

CITYSCAPES = (1024, 2048)
FLOPS_SIZE = (969, 969)

# (name suffix, row, transformers, paper params (M), paper GFLOPs)
TABLE_4 = (
    ("", "UFP [27]", (), 71.3, 916.1),
    ("_st", "UFP+ST [27]", ("st",), 91.2, 948.4),
    ("_lgt", "UFP+LGT [27]", ("gt",), 102.8, 1008.3),
    ("_rt", "UFP+RT [27]", ("rt",), 77.4, 929.3),
    ("_lgt_st", "UFP+LGT+ST [27]", ("st", "gt"), 121.3, 1052.6),
    ("_rt_st", "UFP+RT+ST [27]", ("st", "rt"), 96.2, 985.2),
    ("_lgt_rt", "UFP+LGT+RT [27]", ("gt", "rt"), 107.0, 1014.8),
    ("_lgt_st_rt", "UFP+LGT+ST+RT [27]", ("st", "gt", "rt"), 127.2, 1063.9),
)

for _suffix, _row, _transformers, _params, _gflops in TABLE_4:
    _names = {"st": "ST", "gt": "LGT", "rt": "RT"}
    _text = "dilated ResNet-101 + UFP" + "".join(f" + {_names[t]}" for t in _transformers) + " + concat head"
    if _suffix == "_lgt_st_rt":
        _text += "; also Table 5 UFP+FPT"
    register_model(
        ModelInfo(
            name=f"fpt_ufp{_suffix}_r101",
            task="semantic",
            paper="FPT",
            table="Table 4",
            row=_row,
            paper_params_m=_params,
            input_size=CITYSCAPES,
            description=_text,
            backbone="dilated R101",
            neck="UFP" + ("" if not _transformers else " + FPT"),
            head="concat + conv3x3-BN-ReLU + 1x1",
            paper_gflops=_gflops,
            flops_input_size=FLOPS_SIZE,
        ),
        partial(build_ufp_segmenter, transformers=_transformers),
    )
