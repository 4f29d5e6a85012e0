"""FPT, the Feature Pyramid Transformer (Zhang et al., ECCV 2020), built from the paper's text (section 3).

The authors' public code departs from the paper (a dot-product non-local "grounding", no Euclidean
similarity, a different rendering module), so only the text is followed here; every reading of a vague
point is stated where it is used. Notation: a pyramid is ordered fine -> coarse ("low" -> "high" level),
all levels have C channels (256 in the paper).

Self-Transformer (ST, section 3.2, eq. 2-3): q = f_q(X), k = f_k(X), v = f_v(X) are 1x1 convs C -> C (with
bias; the paper does not give their widths: interpretation C, so that q and k split into N parts of C/N);
s^n_ij = q_{i,n} . k_{j,n} (plain dot product, the paper's F_sim, no 1/sqrt(d) scale); the weights are the
mixture of softmaxes (MoS) w_ij = sum_n pi_n softmax_j(s^n_ij), pi = softmax_n(w_n^T mean_j(k_j)) with a
learnable N x C matrix of vectors w_n (no bias), computed per image; the output is sum_j w_ij v_j (v is not
split). N = 2 for ST (section 3.5). No output projection, residual or normalisation: the paper has none,
and the transformed map is concatenated with the original anyway.

Grounding Transformer (GT, section 3.3, eq. 4-5): queries from the fine map X^f, keys and values from the
coarse map X^c (1x1 convs C -> C each); s^n_ij = -||q_{i,n} - k_{j,n}||^2; MoS with N = 4 and pi from the mean
of the coarse keys; output at the fine size. Since softmax_j is unchanged by a term constant in j, the
global GT computes the scores as 2 q.k - ||k||^2 (exactly the same weights).
Locality-constrained GT (LGT): each query sees only the keys / values in the square_size x square_size
window (5 in the paper) of the coarse map centred on the query's position (the coarse position nearest to
it when the sizes differ); "for positions of k_j and v_j that exceed the index, we use 0 value instead":
positions outside the map hold zero keys and values and take part in the softmax (a zero key scores
-||q||^2). `outside="mask"` excludes them instead (then a window covering the whole map gives exactly
the global GT). pi stays computed from the whole coarse map.

Rendering Transformer (RT, section 3.4, eq. 6): Q is the coarse map, K = V the fine map. w = GAP(K) (a
C-vector, no parameters: the text has no transform on it); Q_att = Q * w channel-wise (F_att, the
channel-wise "outer product"); F_conv = 3x3 conv on Q_att; V_dow = a 3x3 conv with stride s on V, where s is
the scale ratio of the two maps (1 when equal, as in UFP); output = 3x3 conv(F_conv(Q_att) + V_dow) (F_add,
"summation with a 3x3 convolution"). Interpretation for non-adjacent levels: one 3x3 conv with stride 4 or
8, as written (the text allows any stride), rather than a chain of stride-2 convs.

Assembly (section 3.5, Fig. 2): every level gets ST of itself, GT from every coarser level and RT from every
finer level ("the top/bottom layer feature maps have no rendering/grounding transformer": the coarsest level
receives no GT, the finest no RT); interpretation: all pairs of levels interact, not only adjacent ones
(Fig. 1(e): a low-level mouse interacts with a high-level computer; the public code also pairs every
level with every other); `pairs="adjacent"` restricts GT / RT to neighbouring levels. The transformed maps and the
original are concatenated ([X, ST, GT..., RT...]) and a 3x3 conv reduces them to C channels, level by level.
DropBlock (torchvision's drop_block2d, block 5 / keep 0.9 for detection, 3 / 0.9 for segmentation, section
3.5) is applied to each output map in training. `norm="bn"` puts BatchNorm after each 3x3 conv (conv without
bias), the paper's "SBN" ablation (Table 2); default none, as the FPN it replaces. Convs use
kaiming-uniform(a=1) weights and zero bias (the public code's `initialize`, = c2_xavier_fill).

Cost: ST and global GT are dense attention over all positions (quadratic in H*W); they run through
`F.scaled_dot_product_attention` (memory-efficient kernels, no H*W x H*W matrix kept), one call per MoS part.
`attention_weights(...)` computes the explicit (B, L, S) weights for inspection and tests.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import drop_block2d

from alignbench.models.fpn import FPN
from alignbench.models.layers import c2_xavier_fill, max_pool_p6, resize_to

TRANSFORMERS = ("st", "gt", "rt")
OUTSIDE = ("zeros", "mask")
PAIRS = ("all", "adjacent")
PYRAMIDS = ("bfp", "fpn")


def _conv1x1(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, kernel_size=1)
    c2_xavier_fill(conv)
    return conv


def _conv3x3(in_channels: int, out_channels: int, *, stride: int = 1, norm: str | None = None) -> nn.Module:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=norm is None)
    c2_xavier_fill(conv)
    if norm is None:
        return conv
    if norm != "bn":
        raise ValueError(f"norm: expected None or 'bn', got {norm!r}")
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels))


class DropBlock(nn.Module):
    """torchvision's DropBlock2d, usable on maps smaller than the block: torchvision clips the block to the
    map and then rejects an even size (a 2 x 3 P5 of a small image); we clip to the largest odd size."""

    def __init__(self, p: float, block_size: int) -> None:
        super().__init__()
        self.p = p
        self.block_size = block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        size = min(self.block_size, x.shape[-2], x.shape[-1])
        size -= 1 - size % 2
        return drop_block2d(x, self.p, size, training=True)

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}"


class MixturePrior(nn.Module):
    """pi = softmax_n(w_n^T k_mean): the MoS mixing weights of FPT eq. 2, one set per image."""

    def __init__(self, channels: int, parts: int) -> None:
        super().__init__()
        self.parts = parts
        self.weight = nn.Parameter(torch.empty(parts, channels))
        # the public code (MixtureOfSoftMax) initialises these vectors uniformly in +-1/sqrt(N)
        nn.init.uniform_(self.weight, -(parts**-0.5), parts**-0.5)

    def forward(self, keys: torch.Tensor) -> torch.Tensor:
        """(B, C, ...) keys -> (B, N) mixing weights (rows sum to 1)."""
        mean = keys.flatten(2).mean(dim=2)
        return torch.softmax(mean @ self.weight.t(), dim=1)


def _split(x: torch.Tensor, parts: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, HW, C/N)."""
    batch, channels = x.shape[:2]
    return x.reshape(batch, parts, channels // parts, -1).transpose(2, 3)


def _scores(q: torch.Tensor, k: torch.Tensor, similarity: str) -> torch.Tensor:
    """(B, N, L, d), (B, N, S, d) -> (B, N, L, S) similarity per part: dot or -squared Euclidean distance."""
    if similarity == "dot":
        return q @ k.transpose(-1, -2)
    return -torch.cdist(q, k).square()


def _mos_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pi: torch.Tensor, similarity: str
) -> torch.Tensor:
    """sum_n pi_n softmax_j(s^n_ij) v_j for all queries, via scaled_dot_product_attention.

    q (B, N, L, d), k (B, N, S, d), v (B, S, C), pi (B, N) -> (B, L, C). The Euclidean score is expressed
    as the dot product of [2q, -1] and [k, ||k||^2] (= 2 q.k - ||k||^2, the score up to -||q||^2).
    """
    if similarity == "euclidean":
        q = torch.cat([2 * q, -torch.ones_like(q[..., :1])], dim=-1)
        k = torch.cat([k, k.square().sum(dim=-1, keepdim=True)], dim=-1)
    values = v.unsqueeze(1).expand(-1, q.shape[1], -1, -1)
    per_part = F.scaled_dot_product_attention(q, k, values, scale=1.0)  # (B, N, L, C)
    return (per_part * pi[:, :, None, None]).sum(dim=1)


class SelfTransformer(nn.Module):
    """ST: non-local attention within one map with MoS normalisation (module docstring)."""

    similarity = "dot"

    def __init__(self, channels: int, parts: int = 2) -> None:
        super().__init__()
        if channels % parts:
            raise ValueError(f"channels ({channels}) must be divisible by parts ({parts})")
        self.parts = parts
        self.query, self.key, self.value = _conv1x1(channels), _conv1x1(channels), _conv1x1(channels)
        self.prior = MixturePrior(channels, parts)

    def _qkv(self, query_map: torch.Tensor, key_map: torch.Tensor):
        q, k, v = self.query(query_map), self.key(key_map), self.value(key_map)
        return _split(q, self.parts), _split(k, self.parts), v.flatten(2).transpose(1, 2), self.prior(k)

    def attention_weights(self, query_map: torch.Tensor, key_map: torch.Tensor | None = None) -> torch.Tensor:
        """Explicit MoS weights (B, L, S) over the key positions (rows sum to 1); small maps only."""
        q, k, _, pi = self._qkv(query_map, query_map if key_map is None else key_map)
        weights = torch.softmax(_scores(q, k, self.similarity), dim=-1)
        return (weights * pi[:, :, None, None]).sum(dim=1)

    def _attend(self, query_map: torch.Tensor, key_map: torch.Tensor) -> torch.Tensor:
        q, k, v, pi = self._qkv(query_map, key_map)
        out = _mos_attention(q, k, v, pi, self.similarity)  # (B, L, C)
        batch, _, height, width = query_map.shape
        return out.transpose(1, 2).reshape(batch, -1, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._attend(x, x)


class GroundingTransformer(SelfTransformer):
    """GT: fine-map queries attend to coarse-map keys / values with the negative squared Euclidean
    similarity and MoS; `square_size` makes it the locality-constrained LGT (module docstring).

    `forward(fine, coarse)` returns a map of the fine map's size.
    """

    similarity = "euclidean"

    def __init__(
        self, channels: int, parts: int = 4, *, square_size: int | None = None, outside: str = "zeros"
    ) -> None:
        super().__init__(channels, parts)
        if square_size is not None and (square_size < 1 or square_size % 2 == 0):
            raise ValueError(f"square_size must be a positive odd number, got {square_size}")
        if outside not in OUTSIDE:
            raise ValueError(f"outside: expected one of {OUTSIDE}, got {outside!r}")
        self.square_size = square_size
        self.outside = outside

    def _windows(self, fine: torch.Tensor, coarse: torch.Tensor):
        """Per window offset: (scores (B, N, H, W), value (B, C, H, W)) at the fine size, plus pi and
        validity masks; coarse maps are shifted with zero padding, then nearest-resized to the fine size."""
        q = self.query(fine)
        k, v = self.key(coarse), self.value(coarse)
        pi = self.prior(k)
        radius = self.square_size // 2
        padded_k = F.pad(k, (radius,) * 4)
        padded_v = F.pad(v, (radius,) * 4)
        inside = F.pad(torch.ones_like(k[:, :1]), (radius,) * 4)
        batch, channels, height, width = q.shape
        coarse_h, coarse_w = k.shape[-2:]
        q_parts = q.reshape(batch, self.parts, channels // self.parts, height, width)
        scores, values, valid = [], [], []
        for dy in range(self.square_size):
            for dx in range(self.square_size):
                window = (slice(None), slice(None), slice(dy, dy + coarse_h), slice(dx, dx + coarse_w))
                k_shift = resize_to(padded_k[window], (height, width), "nearest")
                k_parts = k_shift.reshape(batch, self.parts, channels // self.parts, height, width)
                scores.append(-(q_parts - k_parts).square().sum(dim=2))
                values.append(resize_to(padded_v[window], (height, width), "nearest"))
                valid.append(resize_to(inside[window], (height, width), "nearest"))
        return torch.stack(scores, dim=2), values, torch.stack(valid, dim=2), pi  # scores (B, N, s*s, H, W)

    def _local_weights(self, fine: torch.Tensor, coarse: torch.Tensor):
        scores, values, valid, pi = self._windows(fine, coarse)
        if self.outside == "mask":
            scores = scores.masked_fill(valid == 0, float("-inf"))
        weights = (torch.softmax(scores, dim=2) * pi[:, :, None, None, None]).sum(dim=1)  # (B, s*s, H, W)
        return weights, values

    def attention_weights(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Explicit MoS weights: (B, L, S) over coarse positions for the global GT; for LGT (B, s*s, H, W)
        over the window offsets (row-major, top-left first), including outside positions."""
        if self.square_size is None:
            return super().attention_weights(fine, coarse)
        return self._local_weights(fine, coarse)[0]

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        if self.square_size is None:
            return self._attend(fine, coarse)
        weights, values = self._local_weights(fine, coarse)
        return sum(weights[:, index : index + 1] * value for index, value in enumerate(values))


class RenderingTransformer(nn.Module):
    """RT: render the coarse map Q with the fine map K = V (module docstring).

    `forward(fine, coarse)` returns a map of the coarse map's size.

    Args:
        channels: C.
        stride: the scale ratio coarse / fine (1 for maps of equal size).
        norm: None or "bn" (BatchNorm after each 3x3 conv).
    """

    def __init__(self, channels: int, stride: int = 2, *, norm: str | None = None) -> None:
        super().__init__()
        self.refine = _conv3x3(channels, channels, norm=norm)
        self.downsample = _conv3x3(channels, channels, stride=stride, norm=norm)
        self.output = _conv3x3(channels, channels, norm=norm)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        weight = fine.mean(dim=(2, 3), keepdim=True)  # GAP(K)
        attended = self.refine(coarse * weight)
        # sizes agree for inputs padded to the pyramid's stride; otherwise nearest-resize to Q's size
        downsampled = resize_to(self.downsample(fine), coarse.shape[-2:], "nearest")
        return self.output(attended + downsampled)


class FeaturePyramidTransformer(nn.Module):
    """The FPT block on a C-channel pyramid: every level -> 3x3 conv([X, ST(X), GT from each coarser level,
    RT from each finer level]) (module docstring). Keys and sizes are kept.

    Args:
        channels: C of every level.
        strides: {level: stride}, finest first (ties allowed: UFP's levels share one resolution).
        transformers: the subset of ("st", "gt", "rt") to use (FPT Table 1 / Table 4 ablations).
        st_parts / gt_parts: MoS parts N (2 and 4 in the paper).
        square_size: None for the global GT, an odd size (5 in the paper) for LGT.
        outside: LGT's positions outside the map, "zeros" (the paper) or "mask".
        pairs: "all" (every coarser level grounds into a level, every finer one renders it) or "adjacent".
        norm: None or "bn" (after every 3x3 conv of RT and of the fusion).
        dropblock_size: DropBlock block size on every output in training (None: no DropBlock).
        dropblock_p: DropBlock drop probability, 1 - keep probability (0.1).
    """

    def __init__(
        self,
        channels: int,
        strides: Mapping[str, int],
        *,
        transformers: Sequence[str] = TRANSFORMERS,
        st_parts: int = 2,
        gt_parts: int = 4,
        square_size: int | None = None,
        outside: str = "zeros",
        pairs: str = "all",
        norm: str | None = None,
        dropblock_size: int | None = None,
        dropblock_p: float = 0.1,
    ) -> None:
        super().__init__()
        if pairs not in PAIRS:
            raise ValueError(f"pairs: expected one of {PAIRS}, got {pairs!r}")
        unknown = sorted(set(transformers) - set(TRANSFORMERS))
        if unknown or not transformers:
            raise ValueError(f"transformers: expected a non-empty subset of {TRANSFORMERS}, got {tuple(transformers)}")
        self.levels = tuple(strides)
        self.strides = dict(strides)
        self.transformers = tuple(name for name in TRANSFORMERS if name in transformers)
        self.st = nn.ModuleDict()
        self.gt = nn.ModuleDict()
        self.rt = nn.ModuleDict()
        self.fuse = nn.ModuleDict()
        span = len(self.levels) if pairs == "all" else 1
        for index, level in enumerate(self.levels):
            maps = 1
            if "st" in self.transformers:
                self.st[level] = SelfTransformer(channels, st_parts)
                maps += 1
            if "gt" in self.transformers:
                for coarse in self.levels[index + 1 : index + 1 + span]:
                    self.gt[f"{coarse}_to_{level}"] = GroundingTransformer(
                        channels, gt_parts, square_size=square_size, outside=outside
                    )
                    maps += 1
            if "rt" in self.transformers:
                for fine in self.levels[max(0, index - span) : index]:
                    ratio = max(1, self.strides[level] // self.strides[fine])
                    self.rt[f"{fine}_to_{level}"] = RenderingTransformer(channels, ratio, norm=norm)
                    maps += 1
            self.fuse[level] = _conv3x3(maps * channels, channels, norm=norm)
        self.dropblock = DropBlock(dropblock_p, dropblock_size) if dropblock_size else None

    def forward(self, pyramid: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        outputs: OrderedDict[str, torch.Tensor] = OrderedDict()
        for index, level in enumerate(self.levels):
            x = pyramid[level]
            maps = [x]
            if level in self.st:
                maps.append(self.st[level](x))
            for coarse in self.levels[index + 1 :]:
                if f"{coarse}_to_{level}" in self.gt:
                    maps.append(self.gt[f"{coarse}_to_{level}"](x, pyramid[coarse]))
            for fine in self.levels[:index]:
                if f"{fine}_to_{level}" in self.rt:
                    maps.append(self.rt[f"{fine}_to_{level}"](pyramid[fine], x))
            out = self.fuse[level](torch.cat(maps, dim=1))
            outputs[level] = self.dropblock(out) if self.dropblock is not None else out
        return outputs


class FPT(nn.Module):
    """FPT as a pyramid neck with the FPN neck interface: {"c2".."c5"} -> {"p2".."p5"(, "p6")}.

    The paper applies FPT to the "bottom-up feature pyramid" (BFP) and compares it with FPN, PANet and
    ZigZagNet as alternative cross-scale interactions on that BFP (FPT Table 3: "BFP+FPN" vs "BFP+FPT");
    interpretation of BFP: the backbone maps reduced to `out_channels` by 1x1 lateral convs (with bias),
    FPN's laterals without its top-down path or output convs (`pyramid="bfp"`, default). `pyramid="fpn"`
    runs the transformers on a full FPN's outputs instead. P6 (`top_block=True`, detection) is FPN's
    stride-2 1x1 max-pool of the transformed P5.

    Args:
        in_channels: backbone widths, e.g. {"c2": 256, ..., "c5": 2048}.
        out_channels: C (256).
        in_features: backbone maps, finest first.
        pyramid: "bfp" or "fpn".
        top_block: add "p6".
        transformers: the subset of ("st", "gt", "rt") to use; empty: the bare BFP (no transformer).
        dropblock_size: 5 for detection (the paper), None to disable; other keywords: see
            `FeaturePyramidTransformer` (st_parts=2, gt_parts=4, square_size=None,
            outside="zeros", pairs="all", norm=None).
    """

    def __init__(
        self,
        in_channels: Mapping[str, int],
        out_channels: int = 256,
        *,
        in_features: Sequence[str] = ("c2", "c3", "c4", "c5"),
        pyramid: str = "bfp",
        top_block: bool = False,
        transformers: Sequence[str] = TRANSFORMERS,
        st_parts: int = 2,
        gt_parts: int = 4,
        square_size: int | None = None,
        outside: str = "zeros",
        pairs: str = "all",
        norm: str | None = None,
        dropblock_size: int | None = 5,
        dropblock_p: float = 0.1,
    ) -> None:
        super().__init__()
        if pyramid not in PYRAMIDS:
            raise ValueError(f"pyramid: expected one of {PYRAMIDS}, got {pyramid!r}")
        self.in_features = tuple(in_features)
        self.out_channels = out_channels
        self.top_block = top_block
        levels = [f"p{name[1:]}" for name in self.in_features]
        self.fpn = FPN(in_channels, out_channels, in_features=self.in_features) if pyramid == "fpn" else None
        self.lateral = nn.ModuleDict()
        if self.fpn is None:
            for name, level in zip(self.in_features, levels):
                self.lateral[level] = nn.Conv2d(in_channels[name], out_channels, kernel_size=1)
                c2_xavier_fill(self.lateral[level])
        # No transformers: the bare BFP (FPT Table 1's baseline row), the lateral maps unchanged.
        self.transformer = None if not transformers else FeaturePyramidTransformer(
            out_channels,
            {level: 2 ** int(level[1:]) for level in levels},
            transformers=transformers,
            st_parts=st_parts,
            gt_parts=gt_parts,
            square_size=square_size,
            outside=outside,
            pairs=pairs,
            norm=norm,
            dropblock_size=dropblock_size,
            dropblock_p=dropblock_p,
        )
        self.levels = tuple(levels)
        self.strides: dict[str, int] = {level: 2 ** int(level[1:]) for level in levels}
        if top_block:
            top = int(levels[-1][1:]) + 1
            self.strides[f"p{top}"] = 2**top

    def forward(self, features: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        if self.fpn is not None:
            pyramid = self.fpn(features)
        else:
            pyramid = OrderedDict(
                (f"p{name[1:]}", self.lateral[f"p{name[1:]}"](features[name])) for name in self.in_features
            )
        outputs = self.transformer(pyramid) if self.transformer is not None else pyramid
        if self.top_block:
            top = self.levels[-1]
            outputs[f"p{int(top[1:]) + 1}"] = max_pool_p6(outputs[top])
        return outputs
