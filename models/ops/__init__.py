"""Custom operators of the model zoo: deformable convolution (FaPN, SFNet Table 2(d)) and flow warping (SFNet)."""

from alignbench.models.ops.deform import ModulatedDeformConv2d
from alignbench.models.ops.flow import base_grid, flow_warp

__all__ = ["ModulatedDeformConv2d", "base_grid", "flow_warp"]
