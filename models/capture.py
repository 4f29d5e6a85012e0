"""Recording what alignment modules do, for the visualisation notebooks.

Every alignment module (FaPN's FAM, SFNet's flow alignment, ...) derives from `AlignmentModule`, knows
the pyramid level it produces (e.g. "p2") and calls `self.report(name=tensor, ...)` with the tensors
worth looking at. `report` does nothing unless a `capture` context is open on a model containing the
module, so models run unchanged (and record nothing) outside the `with` block:

    with models.capture(model) as record:
        logits = model(images)
    record["p2"]["offset"]      # FaPN: upsampled, reference, aligned, offset, mask
    record.module_names["p2"]   # the module that reported it, e.g. "neck.align.p2"

Tensors are detached copies. A level reported twice inside one `with` (two forward calls) keeps the last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from torch import nn


class CaptureRecord(Mapping):
    """What the alignment modules of one model reported: level -> {tensor name -> tensor}."""

    def __init__(self) -> None:
        self._levels: dict[str, dict[str, torch.Tensor]] = {}
        self.module_names: dict[str, str] = {}

    def add(self, level: str, module_name: str, tensors: Mapping[str, torch.Tensor]) -> None:
        """Store detached copies of `tensors` under `level` (replacing an earlier report of that level)."""
        self._levels[level] = {name: tensor.detach().clone() for name, tensor in tensors.items()}
        self.module_names[level] = module_name

    def __getitem__(self, level: str) -> dict[str, torch.Tensor]:
        return self._levels[level]

    def __iter__(self) -> Iterator[str]:
        return iter(self._levels)

    def __len__(self) -> int:
        return len(self._levels)

    def __repr__(self) -> str:
        parts = [f"{level}: {sorted(tensors)}" for level, tensors in self._levels.items()]
        return f"CaptureRecord({', '.join(parts)})"


class AlignmentModule(nn.Module):
    """Base class of modules that align one pyramid level and can report tensors for inspection."""

    def __init__(self, level: str) -> None:
        super().__init__()
        self.level = level
        self._capture_sinks: list[tuple[CaptureRecord, str]] = []

    @property
    def capturing(self) -> bool:
        """True inside a `capture` context: only then is it worth preparing tensors to report."""
        return bool(self._capture_sinks)

    def report(self, **tensors: torch.Tensor) -> None:
        """Hand named tensors of this level to every open capture (no-op when none is open)."""
        for record, module_name in self._capture_sinks:
            record.add(self.level, module_name, tensors)


@contextlib.contextmanager
def capture(model: nn.Module) -> Iterator[CaptureRecord]:
    """Record the reports of every `AlignmentModule` inside `model` while the context is open."""
    record = CaptureRecord()
    reporters = [(name, module) for name, module in model.named_modules() if isinstance(module, AlignmentModule)]
    for name, module in reporters:
        module._capture_sinks.append((record, name))
    try:
        yield record
    finally:
        for _, module in reporters:
            module._capture_sinks = [sink for sink in module._capture_sinks if sink[0] is not record]
