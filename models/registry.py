"""The model registry: every buildable model by name, with the paper row it reproduces.

    models.build("pointrend_fapn_r50", num_classes=19, weights="r50.pth")
    models.list_models(task="semantic")
    models.get_info("rt_fapn_r18").paper_params_m

A model family registers its entries with `register_model(info, builder)` (or as a decorator on the
builder); `builder(num_classes=..., **overrides)` returns the module. The registry imports no model
family: each family registers its entries in its own `zoo.py`, and `alignbench.models` loads them once
(models/families.py), so the registry is complete whenever `alignbench.models` has been imported.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alignbench.models.checkpoints import builder_defaults, load_checkpoint, read_checkpoint
from alignbench.tasks import TASKS

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class ModelInfo:
    """Metadata of one registered model.

    Attributes:
        name: registry name.
        task: "semantic", "detection", "instance" or "panoptic".
        paper: the paper it reproduces, e.g. "FaPN".
        table: the table, e.g. "Table 1" ("Table I" is FaPN's supplementary table).
        row: the row as printed in the paper (method / backbone).
        paper_params_m: the paper's parameter count in millions, None where it states none.
        input_size: default (H, W) input, the paper's evaluation size.
        description: one line on what the model is.
        backbone: e.g. "R50".
        neck: e.g. "FaPN".
        head: e.g. "PointRend".
        paper_gflops: the paper's "GFLOPs" (multiply-accumulates in the papers compared here: FaPN, SFNet
            and FPT count one multiply-add as one FLOP), None where it states none.
        flops_input_size: the (H, W) input at which the paper counts them (None: `input_size`).
    """

    name: str
    task: str
    paper: str
    table: str
    row: str
    paper_params_m: float | None
    input_size: tuple[int, int]
    description: str
    backbone: str = ""
    neck: str = ""
    head: str = ""
    paper_gflops: float | None = None
    flops_input_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {self.task!r}")


_REGISTRY: dict[str, tuple[ModelInfo, Callable[..., nn.Module]]] = {}


def register_model(info: ModelInfo, builder: Callable[..., nn.Module] | None = None):
    """Register `builder` under `info.name`; without `builder`, return a decorator that does it."""

    def add(function: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if info.name in _REGISTRY:
            raise ValueError(f"model {info.name!r} is already registered")
        _REGISTRY[info.name] = (info, function)
        return function

    return add if builder is None else add(builder)


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see models.list_models()"
    return ValueError(f"unknown model {name!r}{hint}")


def get_info(name: str) -> ModelInfo:
    """The metadata of a registered model; ValueError naming close matches for an unknown name."""
    if name not in _REGISTRY:
        raise _unknown(name)
    return _REGISTRY[name][0]


def list_models(task: str | None = None) -> list[ModelInfo]:
    """All registered models (of one task if given), in registration order."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    return [info for info, _ in _REGISTRY.values() if task is None or info.task == task]


def build(
    name: str,
    num_classes: int = 19,
    *,
    checkpoint: str | Path | None = None,
    backbone_weights: str | Path | None = None,
    **overrides,
) -> nn.Module:
    """Build a registered model; `overrides` are keyword options of its builder.

    Args:
        checkpoint: a whole-model checkpoint of any supported format (ours, the SFNet authors', detectron2's;
            see models.checkpoints), loaded all or nothing. Its format may imply builder options (a
            detectron2 checkpoint builds detectron2's ResNet), unless `overrides` set them.
        backbone_weights: an ImageNet checkpoint of the backbone (see models.backbones.weights).

    The model carries its metadata as `model.model_info` and, with a checkpoint, what the load did as
    `model.checkpoint_report`. Bad files raise ValueError subclasses with one-line messages.
    """
    info = get_info(name)
    builder = _REGISTRY[name][1]
    accepted = builder_options(name)
    unknown = sorted(set(overrides) - accepted - {"backbone_weights"})
    if unknown or (backbone_weights is not None and "backbone_weights" not in accepted):
        unknown = unknown or ["backbone_weights"]
        raise ValueError(
            f"{', '.join(unknown)}: not an option of model {name!r} (options: {', '.join(sorted(accepted))})"
        )
    if backbone_weights is not None:
        overrides["backbone_weights"] = backbone_weights
    loaded = read_checkpoint(checkpoint) if checkpoint is not None else None
    if loaded is not None:
        overrides = {**builder_defaults(loaded, accepted), **overrides}
    model = builder(num_classes=num_classes, **overrides)
    model.model_info = info
    if loaded is not None:
        model.checkpoint_report = load_checkpoint(model, loaded)
    logger.debug("built %s with %d classes and overrides %s", name, num_classes, overrides)
    return model


def get_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered under `name` (what `build` calls), e.g. to compare two entries."""
    get_info(name)
    return _REGISTRY[name][1]


def is_registered(name: str) -> bool:
    """Whether a model is registered under `name`."""
    return name in _REGISTRY


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as frozen BatchNorm statistics excluded)."""
    return sum(parameter.numel() for parameter in model.parameters())


def measured_params(name: str, num_classes: int = 19, **overrides) -> int:
    """Parameter count of a registered model as the papers count it, built on the meta device (no memory).

    Backbone BatchNorm is frozen (its affine terms are buffers, as with the pre-trained, frozen-BN
    backbones the papers count) unless `overrides` say otherwise.
    """
    builder = _REGISTRY[get_info(name).name][1]
    if "frozen_bn" in inspect.signature(builder).parameters:
        overrides.setdefault("frozen_bn", True)
    with torch.device("meta"):
        model = build(name, num_classes=num_classes, **overrides)
    return count_parameters(model)


def builder_options(name: str) -> set[str]:
    """The keyword options a registered model's builder accepts (for `build(name, **overrides)`)."""
    builder = _REGISTRY[get_info(name).name][1]
    return {p.name for p in inspect.signature(builder).parameters.values() if p.kind is p.KEYWORD_ONLY}
