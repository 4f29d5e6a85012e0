"""Checkpoints into alignbench models: one reader that recognises the format, one strict loader.

    models.build("sfnet_r18", checkpoint="sfnet_r18_cityscapes.pth")       # SFSegNets release
    models.build("pointrend_fapn_r50", checkpoint="model_final.pth")        # FaPN (detectron2) release

Formats (`read_checkpoint` recognises them from the file's structure and key names):
- "alignbench": our own checkpoints, `{"model": state_dict}` or a bare state dict in our key names;
- "sfsegnets": the SFNet authors' checkpoints (SFSegNets optimizer.py `restore_snapshot`: a
  `{"state_dict": ...}` payload or a bare state dict; DataParallel's "module." prefixes are stripped);
  recognised by the authors' head keys ("head.conv_last.*");
- "detectron2": `.pth` files holding `{"model": state_dict}` with detectron2's key names
  ("backbone.bottom_up.*", "sem_seg_head.*", ...), and model-zoo `.pkl` pickles of numpy arrays
  (`{"model": {...}, "__author__": ...}`, detectron2 checkpoint/detection_checkpoint.py `_load_file`).

A model accepts a foreign format through `model.checkpoint_converters[format](model, state)`, which returns
the state renamed to our keys and the tensors it drops on purpose, each with the reason (for example SFNet's
deep-supervision heads in a model built without them). Loading is all or nothing: every tensor of the file
is used or reported dropped, every parameter and buffer of the model is filled, shapes agree; otherwise
`CheckpointError` (a ValueError) names the counts and the first missing / unexpected keys in one line.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

FORMATS = ("alignbench", "sfsegnets", "detectron2")
_DETECTRON2_PREFIXES = ("backbone.bottom_up.", "sem_seg_head.", "proposal_generator.", "roi_heads.", "pixel_mean")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model (one-line message)."""


@dataclass
class Checkpoint:
    """A checkpoint read from disk: its format and its tensors (prefixes such as "module." removed)."""

    path: Path
    format: str
    state: dict[str, torch.Tensor]
    author: str | None = None


@dataclass
class LoadReport:
    """What a load did: tensors used, tensors dropped on purpose (key -> reason)."""

    path: Path
    format: str
    used: int
    dropped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.path}: {self.format} checkpoint, {self.used} tensors loaded"
        if self.dropped:
            reasons = sorted(set(self.dropped.values()))
            text += f", {len(self.dropped)} dropped ({'; '.join(reasons)})"
        return text


def _short(keys: Iterable[str], limit: int = 3) -> str:
    keys = list(keys)
    return ", ".join(keys[:limit]) + (", ..." if len(keys) > limit else "")


def _strip(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix):]: value for key, value in state.items()}
    return dict(state)


def _as_tensors(state: Mapping, path: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint {path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        tensors[str(key)] = value
    return tensors


def load_weights_file(path: Path):
    """The payload of a weights file: a pickle for `.pkl` (detectron2 / MSRA files; latin-1 for their Python 2
    pickles), else a `torch.save` file read with weights_only. Read errors propagate to the caller."""
    if path.suffix == ".pkl":
        with path.open("rb") as handle:
            return pickle.load(handle, encoding="latin1")
    return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read `path` and recognise its format (module docstring); CheckpointError for unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint: no such file {str(path)!r}")
    try:
        payload = load_weights_file(path)
    except Exception as error:  # truncated or foreign files raise many types (EOFError, RuntimeError, UnpicklingError)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {str(path)!r}: cannot read it (truncated or not a checkpoint: {reason})") from None
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"checkpoint {str(path)!r}: expected a dict of tensors, got a {type(payload).__name__}")
    author = payload.get("__author__") if isinstance(payload.get("__author__"), str) else None
    if isinstance(payload.get("model"), Mapping):
        state = _strip(_as_tensors(payload["model"], path), "module.")
        detectron2 = author is not None or any(key.startswith(_DETECTRON2_PREFIXES) for key in state)
        return Checkpoint(path, "detectron2" if detectron2 else "alignbench", state, author)
    if path.suffix == ".pkl":
        raise CheckpointError(f"checkpoint {str(path)!r}: a .pkl without detectron2's 'model' / '__author__' entries")
    if isinstance(payload.get("state_dict"), Mapping):
        payload = payload["state_dict"]
    state = _strip(_as_tensors(payload, path), "module.")
    if any(key.startswith("head.conv_last.") for key in state):
        return Checkpoint(path, "sfsegnets", state)
    if any(key.startswith(_DETECTRON2_PREFIXES) for key in state):
        return Checkpoint(path, "detectron2", state)
    return Checkpoint(path, "alignbench", state)


Converter = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[dict[str, torch.Tensor], dict[str, str]]]


def rename(state: Mapping[str, torch.Tensor], rules: Iterable[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Rename keys by the first matching (regex, replacement) rule; keys no rule matches keep their name
    (and then show up as unexpected keys in `load_state`)."""
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in compiled:
            if pattern.fullmatch(key):
                key = pattern.sub(replacement, key)
                break
        renamed[key] = value
    return renamed


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> tuple[int, list[str]]:
    """Load `state` (our key names) into `model` only if it fits exactly.

    Returns the number of tensors loaded and the keys of the file's BatchNorm `num_batches_tracked`
    counters the model has no place for (FrozenBatchNorm has none; they do not enter the computation).
    Those counters are optional on either side; everything else must match one to one with equal shapes.
    """
    expected = {key: value for key, value in model.state_dict().items() if not _is_counter(key)}
    given = {key: value for key, value in state.items() if not _is_counter(key)}
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    mismatched = [
        f"{key} {tuple(given[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in given and tuple(given[key].shape) != tuple(expected[key].shape)
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"{len(missing)} model tensors missing from the file (first: {_short(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected tensors in the file (first: {_short(unexpected)})")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatches, file vs model (first: {_short(mismatched, 2)})")
        name = getattr(getattr(model, "model_info", None), "name", type(model).__name__)
        raise CheckpointError(
            f"checkpoint {source} does not fit {name} ({len(given)} tensors in the file, {len(expected)} in the model): "
            + "; ".join(problems)
        )
    model_keys = set(model.state_dict())
    counters = {key: value for key, value in state.items() if _is_counter(key) and key in model_keys}
    unused_counters = [key for key in state if _is_counter(key) and key not in model_keys]
    model.load_state_dict({**given, **counters}, strict=False)
    return len(given) + len(counters), unused_counters


def load_checkpoint(model: nn.Module, checkpoint: str | Path | Checkpoint) -> LoadReport:
    """Load a checkpoint of any supported format into `model` (all or nothing, module docstring)."""
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = read_checkpoint(checkpoint)
    source = f"{str(checkpoint.path)!r} ({checkpoint.format})"
    dropped: dict[str, str] = {}
    state = checkpoint.state
    if checkpoint.format != "alignbench":
        converters: Mapping[str, Converter] = getattr(model, "checkpoint_converters", {})
        if checkpoint.format not in converters:
            name = getattr(getattr(model, "model_info", None), "name", type(model).__name__)
            accepted = ", ".join(["alignbench", *converters])
            raise CheckpointError(f"checkpoint {source}: model {name} loads only {accepted} checkpoints")
        state, dropped = converters[checkpoint.format](model, dict(state))
    used, unused_counters = load_state(model, state, source=source)
    dropped.update({key: "BatchNorm step counter (the model's frozen BatchNorm has none)" for key in unused_counters})
    report = LoadReport(checkpoint.path, checkpoint.format, used, dropped)
    logger.info("%s", report)
    for key, reason in dropped.items():
        logger.info("dropped %s: %s", key, reason)
    return report


def builder_defaults(checkpoint: Checkpoint, accepted: Iterable[str]) -> dict[str, object]:
    """Builder options a checkpoint's format implies (only those the builder accepts): a detectron2
    checkpoint was trained on detectron2's ResNet (`backbone_style="detectron2"`)."""
    defaults: dict[str, object] = {}
    if checkpoint.format == "detectron2" and "backbone_style" in set(accepted):
        defaults["backbone_style"] = "detectron2"
    return defaults
