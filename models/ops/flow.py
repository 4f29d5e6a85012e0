"""Flow warping for SFNet's Flow Alignment Module (FAM): sample a coarse map on a flow-shifted fine grid.

Facts from the SFNet authors' code (SFSegNets, network/nn/operators.py, `AlignedModule.flow_warp`), kept
exactly:
- the base grid has the *output* (fine) size H x W and spans [-1, 1] in both axes (x first, then y, as
  `grid_sample` expects): x_j = -1 + 2 j / (W - 1), y_i = -1 + 2 i / (H - 1);
- the flow (B, 2, H, W), channel 0 horizontal and channel 1 vertical, is added after dividing by [W, H]:
  grid = base + flow / [W, H];
- `grid_sample(coarse, grid, mode="bilinear", padding_mode="zeros", align_corners=True)`: with
  align_corners=True the grid values -1 and +1 are the *centres* of the coarse map's corner pixels, so a
  zero flow reproduces bilinear upsampling with align_corners=True exactly, and warping and upsampling are
  one step. Samples outside the coarse map read zeros.

Units: a flow value f moves the sampling point by f / W in normalised coordinates, i.e. by
f * (w - 1) / (2 W) pixels of the coarse map (width w), about f / 2 fine pixels when W = 2 w: the "halved"
flow of SFNet eq. 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def base_grid(height: int, width: int, *, device=None, dtype=None) -> torch.Tensor:
    """(1, H, W, 2) grid of (x, y) in [-1, 1] with the corners on -1 and +1 (align_corners=True)."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).unsqueeze(0)


def flow_warp(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Warp `features` (B, C, h, w) to the flow's size (B, 2, H, W): bilinear, zero padding, align_corners=True.

    Returns (B, C, H, W). With a zero flow this equals
    `F.interpolate(features, size=(H, W), mode="bilinear", align_corners=True)`.
    """
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow: expected a (B, 2, H, W) tensor, got {tuple(flow.shape)}")
    height, width = flow.shape[-2:]
    grid = base_grid(height, width, device=flow.device, dtype=features.dtype)
    scale = torch.tensor([width, height], device=flow.device, dtype=features.dtype)
    grid = grid + flow.permute(0, 2, 3, 1).to(features.dtype) / scale
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
