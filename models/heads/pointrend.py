"""PointRend semantic segmentation head (Kirillov et al., 2020), as FaPN's Cityscapes tables use it.

Facts from detectron2's projects/PointRend (point_rend/semantic_seg.py, point_head.py,
point_features.py, config.py) and the Cityscapes configs (detectron2
SemanticSegmentation/pointrend_semantic_R_101_FPN_1x_cityscapes.yaml; FaPN authors'
projects/PointRend/configs/SemanticSegmentation/Base-PointRend-Semantic-FAN.yaml and
pointrend_semantic_R_50_FAN_1x_cityscapes.yaml):
- coarse head: the Semantic-FPN head (COARSE_SEM_SEG_HEAD_NAME "SemSegFPNHead"), trained with its own
  cross-entropy ("loss_sem_seg");
- point head ("StandardPointHead"): an MLP of NUM_FC = 3 conv1d layers of FC_DIM = 256 with ReLU and a
  linear predictor, fed with fine-grained features sampled from IN_FEATURES = ["p2"] concatenated with
  the coarse logits at the same points; COARSE_PRED_EACH_LAYER is False in FaPN's config (detectron2's
  default is True: re-append the coarse logits to each layer's input); fc layers c2_msra_fill, predictor
  normal(std=0.001) with zero bias;
- training: TRAIN_NUM_POINTS = 2048 (Cityscapes) points per image, chosen by uncertainty with
  OVERSAMPLE_RATIO k = 3 and IMPORTANCE_SAMPLE_RATIO beta = 0.75 (k * N uniform candidates, the
  beta * N most uncertain kept, the rest uniform random); uncertainty = (2nd - 1st) highest logit;
  loss "loss_sem_seg_point" = cross-entropy of the point logits against the nearest ground-truth label;
- inference: SUBDIVISION_STEPS = 2 rounds of (bilinear 2x upsampling, then re-predict the
  SUBDIVISION_NUM_POINTS = 8192 most uncertain grid cells with the point head); point coordinates are
  in [0, 1] and sampled with grid_sample(align_corners=False).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from alignbench.models.heads.common import upsampled_cross_entropy
from alignbench.models.heads.semantic_fpn import SemanticFPNHead
from alignbench.models.layers import c2_msra_fill


def point_sample(features: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample (B, C, H, W) maps at (B, P, 2) points given as (x, y) in [0, 1] -> (B, C, P)."""
    grid = (2.0 * coords - 1.0).unsqueeze(2)
    return F.grid_sample(features, grid, mode=mode, align_corners=False).squeeze(3)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """(B, C, ...) logits -> (B, 1, ...): second-highest minus highest logit (higher = more uncertain)."""
    top2 = torch.topk(logits, k=2, dim=1).values
    return (top2[:, 1] - top2[:, 0]).unsqueeze(1)


def sample_uncertain_points(
    coarse_logits: torch.Tensor, num_points: int, oversample_ratio: float, importance_sample_ratio: float
) -> torch.Tensor:
    """PointRend's training point selection: (B, num_points, 2) coordinates in [0, 1]."""
    batch = coarse_logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    candidates = torch.rand(batch, num_candidates, 2, device=coarse_logits.device, dtype=coarse_logits.dtype)
    candidate_uncertainty = uncertainty(point_sample(coarse_logits, candidates))[:, 0]
    num_uncertain = int(importance_sample_ratio * num_points)
    index = torch.topk(candidate_uncertainty, k=num_uncertain, dim=1).indices
    chosen = torch.gather(candidates, 1, index.unsqueeze(-1).expand(-1, -1, 2))
    num_random = num_points - num_uncertain
    if num_random > 0:
        random = torch.rand(batch, num_random, 2, device=coarse_logits.device, dtype=coarse_logits.dtype)
        chosen = torch.cat([chosen, random], dim=1)
    return chosen


def most_uncertain_grid_points(uncertainty_map: torch.Tensor, num_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (B, P) into H*W and cell-centre coordinates (B, P, 2) of the P most uncertain cells."""
    batch, _, height, width = uncertainty_map.shape
    num_points = min(height * width, num_points)
    index = torch.topk(uncertainty_map.view(batch, height * width), k=num_points, dim=1).indices
    x = ((index % width).to(uncertainty_map.dtype) + 0.5) / width
    y = (torch.div(index, width, rounding_mode="floor").to(uncertainty_map.dtype) + 0.5) / height
    return index, torch.stack([x, y], dim=2)


class PointHead(nn.Module):
    """PointRend's point MLP (conv1d, kernel 1) on [fine features, coarse logits] per point."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        fc_dim: int = 256,
        num_fc: int = 3,
        coarse_pred_each_layer: bool = False,
    ) -> None:
        super().__init__()
        self.coarse_pred_each_layer = coarse_pred_each_layer
        self.fc_layers = nn.ModuleList()
        width = in_channels + num_classes
        for _ in range(num_fc):
            layer = nn.Conv1d(width, fc_dim, kernel_size=1)
            c2_msra_fill(layer)
            self.fc_layers.append(layer)
            width = fc_dim + (num_classes if coarse_pred_each_layer else 0)
        self.predictor = nn.Conv1d(width, num_classes, kernel_size=1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, fine_features: torch.Tensor, coarse_logits: torch.Tensor) -> torch.Tensor:
        """(B, C_f, P) and (B, K, P) -> point logits (B, K, P)."""
        x = torch.cat([fine_features, coarse_logits], dim=1)
        for layer in self.fc_layers:
            x = F.relu(layer(x))
            if self.coarse_pred_each_layer:
                x = torch.cat([x, coarse_logits], dim=1)
        return self.predictor(x)


class PointRendSemanticHead(nn.Module):
    """Coarse Semantic-FPN prediction refined by a point head (see the module docstring for the facts).

    `forward(features)` returns logits at stride common_stride / 2**subdivision_steps (1 by default,
    i.e. the padded input size).
    """

    def __init__(
        self,
        in_channels: int,
        in_strides: Mapping[str, int],
        num_classes: int,
        *,
        channels: int = 128,
        point_features: Sequence[str] = ("p2",),
        fc_dim: int = 256,
        num_fc: int = 3,
        coarse_pred_each_layer: bool = False,
        train_num_points: int = 2048,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        subdivision_steps: int = 2,
        subdivision_num_points: int = 8192,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        if oversample_ratio < 1 or not 0 <= importance_sample_ratio <= 1:
            raise ValueError("oversample_ratio must be >= 1 and importance_sample_ratio in [0, 1]")
        self.coarse_head = SemanticFPNHead(
            in_channels, in_strides, num_classes, channels=channels, ignore_index=ignore_index
        )
        self.point_features = tuple(point_features)
        self.point_head = PointHead(
            in_channels * len(self.point_features),
            num_classes,
            fc_dim=fc_dim,
            num_fc=num_fc,
            coarse_pred_each_layer=coarse_pred_each_layer,
        )
        self.train_num_points = train_num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.subdivision_steps = subdivision_steps
        self.subdivision_num_points = subdivision_num_points
        self.ignore_index = ignore_index

    def _fine_features(self, features: Mapping[str, torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
        return torch.cat([point_sample(features[name], coords) for name in self.point_features], dim=1)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Adaptive subdivision: upsample 2x, re-predict the most uncertain cells, repeat."""
        coarse = self.coarse_head(features)
        logits = coarse
        for _ in range(self.subdivision_steps):
            logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
            index, coords = most_uncertain_grid_points(uncertainty(logits), self.subdivision_num_points)
            point_logits = self.point_head(self._fine_features(features, coords), point_sample(coarse, coords))
            batch, classes, height, width = logits.shape
            index = index.unsqueeze(1).expand(-1, classes, -1)
            logits = logits.reshape(batch, classes, height * width).scatter(2, index, point_logits)
            logits = logits.view(batch, classes, height, width)
        return logits

    def losses(self, features: Mapping[str, torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Coarse cross-entropy plus the point loss on uncertainty-sampled points."""
        coarse = self.coarse_head(features)
        losses = {"loss_sem_seg": upsampled_cross_entropy(coarse, targets, self.ignore_index)}
        with torch.no_grad():
            coords = sample_uncertain_points(
                coarse, self.train_num_points, self.oversample_ratio, self.importance_sample_ratio
            )
        point_logits = self.point_head(self._fine_features(features, coords), point_sample(coarse, coords))
        point_targets = point_sample(targets.unsqueeze(1).to(coarse.dtype), coords, mode="nearest")[:, 0].long()
        if bool((point_targets != self.ignore_index).any()):
            loss = F.cross_entropy(point_logits, point_targets, ignore_index=self.ignore_index)
        else:
            loss = point_logits.sum() * 0.0
        losses["loss_sem_seg_point"] = loss
        return losses
