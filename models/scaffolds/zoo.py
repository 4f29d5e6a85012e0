"""The built-in necks, registered like a plugin's so that one scaffold compares them on equal terms.

- "fpn": FPN (models.fpn.FPN, detectron2's FPN without norm);
- "fapn": FaPN with FSM and FAM (models.fapn.neck.FaPN, the FaPN authors' detectron2/modeling/backbone/fan.py);
- "sfnet": FPN with SFNet's flow alignment module as its top-down upsampling (models.sfnet.neck.FlowAlignedFPN);
- "fpt": FPT on the bottom-up feature pyramid with SBN and DropBlock (models.fpt.transformer.FPT), the
  setting of FPT Table 1's full row.

Their composed models whose names are paper rows (pointrend_fpn_r50, faster_rcnn_fapn_r101,
mask_rcnn_fpt_r50, ...) are those paper rows (models.scaffolds checks the builders are identical).
"""

from __future__ import annotations

from alignbench.models.fapn.neck import FaPN
from alignbench.models.fpn import FPN
from alignbench.models.fpt.transformer import FPT
from alignbench.models.scaffolds import register_neck
from alignbench.models.sfnet.neck import FlowAlignedFPN

register_neck("fpn", label="FPN")(FPN)
register_neck("fapn", label="FaPN", lateral="fsm", align="fam")(FaPN)
register_neck("sfnet", label="FPN + SFNet FAM")(FlowAlignedFPN)
register_neck("fpt", label="FPT", norm="bn", dropblock_size=5)(FPT)
