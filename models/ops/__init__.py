"""Custom operators of the model zoo (deformable convolution; the flow warp arrives with SFNet)."""

from models.ops.deform import ModulatedDeformConv2d

__all__ = ["ModulatedDeformConv2d"]
