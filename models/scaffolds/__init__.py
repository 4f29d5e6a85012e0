"""Neck registration and composition: a registered neck is built into every task scaffold with each ResNet.

    from alignbench import models

    @models.register_neck("myneck")
    class MyNeck(torch.nn.Module):
        def __init__(self, in_channels, out_channels): ...   # in_channels: {"c2": C2, ..., "c5": C5}
        def forward(self, features): ...                     # {"c2": map, ...} -> {"p2": map, ...}
        # and the attribute self.strides = {"p2": 4, ...}

registers `semantic_fpn_myneck_r18` ... `panoptic_myneck_r101`: the scaffolds of `SCAFFOLDS` (Semantic FPN
and PointRend semantic heads, Faster R-CNN, Mask R-CNN, Panoptic FPN) with each backbone of `BACKBONES`.
The built-in necks (FPN, FaPN, FPN with SFNet's flow alignment, FPT) are registered the same way
(models/scaffolds/zoo.py), so one scaffold compares them on equal terms.

Detection scaffolds need P2..P6: a neck whose constructor takes `top_block` is asked for P6 (FPN's 1x1
stride-2 max-pool of P5, models.layers.max_pool_p6); any other neck is wrapped in `PyramidWithP6`, which
adds the same max-pool P6 after it. A composed name that is already registered (a paper row such as
`pointrend_fpn_r50`) is kept, but only when the paper row builds the identical model (same builder, neck
class, options and depth); any other collision is an error.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from alignbench.models.detection.panoptic import build_panoptic_fpn
from alignbench.models.detection.rcnn import build_detector
from alignbench.models.layers import max_pool_p6
from alignbench.models.registry import ModelInfo, get_builder, get_info, is_registered, register_model
from alignbench.models.segmentation import build_pyramid_segmenter

BACKBONES = {"r18": 18, "r34": 34, "r50": 50, "r101": 101}
CITYSCAPES = (1024, 2048)
COCO = (800, 1333)  # torchvision's / detectron2's COCO test size


@dataclass(frozen=True)
class Scaffold:
    """A task scaffold: `builder(num_classes, depth=..., neck=..., neck_options=...)` makes the model."""

    task: str
    head: str  # the head, as ModelInfo.head shows it
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int]
    needs_p6: bool  # detection heads read P2..P6


SCAFFOLDS: dict[str, Scaffold] = {
    "semantic_fpn": Scaffold("semantic", "Semantic FPN", functools.partial(build_pyramid_segmenter, head="semantic_fpn"),
                             CITYSCAPES, False),
    "pointrend": Scaffold("semantic", "PointRend", build_pyramid_segmenter, CITYSCAPES, False),
    "faster_rcnn": Scaffold("detection", "Faster R-CNN (RPN + 2fc box head)",
                            functools.partial(build_detector, kind="faster"), COCO, True),
    "mask_rcnn": Scaffold("instance", "Mask R-CNN (2fc box head + 4conv mask head)",
                          functools.partial(build_detector, kind="mask"), COCO, True),
    "panoptic": Scaffold("panoptic", "Panoptic FPN (Mask R-CNN + Semantic-FPN stuff branch)", build_panoptic_fpn, COCO, True),
}


@dataclass(frozen=True)
class NeckEntry:
    """A registered neck: its class, the constructor options every composed model uses, its label."""

    name: str
    neck: type[nn.Module]
    options: Mapping = field(default_factory=dict)
    label: str = ""
    models: tuple[str, ...] = ()  # the composed model names


_NECKS: dict[str, NeckEntry] = {}
_NAME = re.compile(r"^[a-z][a-z0-9]*$")


class PyramidWithP6(nn.Module):
    """A neck followed by P6 = 1x1 stride-2 max-pool of its coarsest level (FPN's top block), for the
    detection scaffolds when the neck itself takes no `top_block` option."""

    def __init__(self, neck: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.neck = neck
        self.out_channels = int(getattr(neck, "out_channels", out_channels))
        strides = dict(neck.strides)
        coarsest = max(strides, key=strides.get)
        self.coarsest = coarsest
        self.strides = {**strides, f"p{int(coarsest[1:]) + 1}": 2 * strides[coarsest]}

    def forward(self, features: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        pyramid = OrderedDict(self.neck(features))
        pyramid[f"p{int(self.coarsest[1:]) + 1}"] = max_pool_p6(pyramid[self.coarsest])
        return pyramid


@functools.cache
def with_p6(neck_class: type[nn.Module]) -> Callable[..., nn.Module]:
    """A constructor `(in_channels, out_channels, top_block=..., **options)` for `neck_class` that adds P6 with
    `PyramidWithP6` when asked (cached: the same class gives the same constructor, so builders compare equal)."""

    def build(in_channels, out_channels, *, top_block: bool = False, **options) -> nn.Module:
        neck = neck_class(in_channels, out_channels, **options)
        if not hasattr(neck, "out_channels"):
            neck.out_channels = out_channels
        return PyramidWithP6(neck, out_channels) if top_block else neck

    build.__name__ = build.__qualname__ = neck_class.__name__
    return build


def _constructor(neck_class: type[nn.Module]) -> Callable[..., nn.Module]:
    """The class itself when it takes `top_block` (and so produces P6 itself), else `with_p6(neck_class)`."""
    if "top_block" in inspect.signature(neck_class).parameters:
        return neck_class
    return with_p6(neck_class)


def _resolved(keywords: Mapping) -> dict:
    """A builder's keywords with its neck options completed by the neck constructor's defaults."""
    keywords = dict(keywords)
    neck = keywords.get("neck")
    if neck is not None:
        defaults = {
            p.name: p.default for p in inspect.signature(neck).parameters.values() if p.default is not inspect.Parameter.empty
        }
        keywords["neck_options"] = {**defaults, **dict(keywords.get("neck_options") or {})}
    return keywords


def _same_builder(first: Callable, second: Callable) -> bool:
    """Whether two registry builders (functools.partial objects) build the identical model."""
    if not (isinstance(first, functools.partial) and isinstance(second, functools.partial)):
        return False
    return first.func is second.func and first.args == second.args and _resolved(first.keywords) == _resolved(second.keywords)


def _check_interface(name: str, neck_class) -> None:
    if not (isinstance(neck_class, type) and issubclass(neck_class, nn.Module)):
        raise TypeError(f"register_neck({name!r}): expected a torch.nn.Module subclass, got {neck_class!r}")
    parameters = list(inspect.signature(neck_class).parameters.values())
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in parameters):
        raise TypeError(
            f"register_neck({name!r}): {neck_class.__name__}'s constructor must take (in_channels, out_channels)"
        )
    if not callable(getattr(neck_class, "forward", None)):
        raise TypeError(f"register_neck({name!r}): {neck_class.__name__} has no forward(features)")


def compose(entry: NeckEntry) -> tuple[str, ...]:
    """Register `entry`'s neck in every scaffold with every backbone; returns the model names."""
    constructor = _constructor(entry.neck)
    names = []
    planned: list[tuple[ModelInfo, functools.partial]] = []
    for scaffold_name, scaffold in SCAFFOLDS.items():
        for backbone, depth in BACKBONES.items():
            name = f"{scaffold_name}_{entry.name}_{backbone}"
            builder = functools.partial(
                scaffold.builder, depth=depth, neck=constructor, neck_options=dict(entry.options)
            )
            names.append(name)
            if is_registered(name):
                if not _same_builder(get_builder(name), builder):
                    raise ValueError(
                        f"register_neck({entry.name!r}): {name!r} is already registered as a different model "
                        f"({get_info(name).description}); choose another neck name"
                    )
                continue  # the paper row is this very model: keep its name and metadata
            info = ModelInfo(
                name=name,
                task=scaffold.task,
                paper="",
                table="",
                row=f"{entry.label} / {scaffold.head.split(' (')[0]} R{depth}",
                paper_params_m=None,
                input_size=scaffold.input_size,
                description=f"{scaffold.head} with ResNet-{depth} and the {entry.label} neck (composed)",
                backbone=f"R{depth}",
                neck=entry.label,
                head=scaffold.head,
            )
            planned.append((info, builder))
    for info, builder in planned:  # all checked first: a failed registration registers nothing
        register_model(info, builder)
    return tuple(names)


def register_neck(name: str, *, label: str | None = None, **options):
    """Class decorator: register a neck and compose it into every scaffold with every backbone.

    Args:
        name: lower-case letters and digits (it becomes part of model names, e.g. "semantic_fpn_<name>_r18").
        label: how tables show the neck (default: the class name).
        options: keyword options passed to the neck's constructor in every composed model.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"register_neck: name must be lower-case letters and digits, starting with a letter; got {name!r}")

    def add(neck_class):
        _check_interface(name, neck_class)
        if name in _NECKS:
            raise ValueError(f"register_neck: neck {name!r} is already registered ({_NECKS[name].neck.__name__})")
        entry = NeckEntry(name, neck_class, dict(options), label or neck_class.__name__)
        _NECKS[name] = NeckEntry(entry.name, entry.neck, entry.options, entry.label, compose(entry))
        return neck_class

    return add


def list_necks() -> list[NeckEntry]:
    """The registered necks, in registration order, each with its composed model names."""
    return list(_NECKS.values())


def composed_name(scaffold: str, neck: str, backbone: str) -> str:
    """The registry name of a neck in a scaffold, e.g. ("semantic_fpn", "fapn", "r18") -> "semantic_fpn_fapn_r18"."""
    if scaffold not in SCAFFOLDS:
        raise ValueError(f"scaffold: expected one of {', '.join(SCAFFOLDS)}, got {scaffold!r}")
    if backbone not in BACKBONES:
        raise ValueError(f"backbone: expected one of {', '.join(BACKBONES)}, got {backbone!r}")
    return f"{scaffold}_{neck}_{backbone}"
