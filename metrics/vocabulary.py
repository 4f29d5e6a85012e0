"""The metric vocabulary: every metric key the suites, the papers' numbers, the tables and the results use.

Each key is defined once, here, with its display label and unit, whether a measured value is a fraction
(stored in [0, 1], shown in percent like the papers), whether higher is better, which evaluator produces it
and where in that evaluator's JSON output the value sits (`source`). Adding a metric means adding one entry.

The evaluators' JSON outputs are their public contracts, unchanged (e.g. `alignbench eval semantic` writes
`IoU_category`); this table maps them to the vocabulary's keys (`IoU_cat`) in this one place:

    semantic, boundary   metrics.semantic.SemanticResult.to_json()   ({"mIoU", "IoU_category", "boundary_mIoU": {"3": ...}})
    coco                 {iou type: metrics.coco.CocoResult.to_json()} ({"bbox": {"AP", "APs", ...}})
    panoptic             metrics.panoptic.PanopticResult.to_json()   ({"All": {"pq", ...}, "Things", "Stuff"})
    complexity           {"params_m", "gflops"}                       (parameters in millions, GMACs)
    speed                the harness's Latency.to_json()              ({"fps", "median_ms", ...})

Keys with no evaluator are numbers the papers print that alignbench does not measure (test-set mIoU,
TensorRT speed, output stride, ...): they may appear in the papers' tables only.

Pure data and the standard library: importing this module is instant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from alignbench.tasks import TASKS


@dataclass(frozen=True)
class Evaluator:
    """What produces metrics: `measures` says what it needs, "accuracy" (a trained model's outputs on the data),
    "speed" (a built model, timed) or "complexity" (the model's definition alone: nothing is trained or run)."""

    name: str
    measures: str
    description: str


_EVALUATORS: dict[str, Evaluator] = {}


def register_evaluator(name: str, measures: str, description: str) -> Evaluator:
    """Add an evaluator to the vocabulary (metrics name it as their `evaluator`)."""
    if measures not in ("accuracy", "speed", "complexity"):
        raise ValueError(f"evaluator {name!r}: measures must be accuracy, speed or complexity, got {measures!r}")
    if name in _EVALUATORS:
        raise ValueError(f"evaluator {name!r} is already registered")
    _EVALUATORS[name] = Evaluator(name, measures, description)
    return _EVALUATORS[name]


register_evaluator("semantic", "accuracy", "metrics.semantic: mIoU, iIoU and category scores")
register_evaluator("boundary", "accuracy", "metrics.semantic with metrics.boundary: boundary-band mIoU")
register_evaluator("coco", "accuracy", "metrics.coco: COCOeval's AP of boxes and masks")
register_evaluator("panoptic", "accuracy", "metrics.panoptic: PQ, SQ, RQ")
register_evaluator("complexity", "complexity", "the harness's counts: parameters and GMACs")
register_evaluator("speed", "speed", "the harness's timing: latency and FPS")

#: name -> Evaluator, in registration order
EVALUATORS: Mapping[str, Evaluator] = MappingProxyType(_EVALUATORS)


def evaluators_measuring(*kinds: str) -> tuple[str, ...]:
    """The names of the evaluators whose `measures` is one of `kinds` (e.g. "accuracy")."""
    return tuple(name for name, evaluator in EVALUATORS.items() if evaluator.measures in kinds)


@dataclass(frozen=True)
class Metric:
    """One metric key.

    Attributes:
        key: the name used in suites, paper files, results and tables.
        label: how a table, plot or console line names it.
        unit: "%", "M" (millions), "GMACs", "FPS", "ms" or "" (a plain number).
        fraction: measured values are fractions in [0, 1], shown in percent (x 100).
        higher_is_better: for bold "best" cells; False for parameters, GMACs and latency.
        evaluator: a name of EVALUATORS, or None for a number only the papers print.
        tasks: the tasks whose runs produce it (empty for paper-only numbers).
        source: dotted path(s) into the evaluator's JSON output; with several paths the value is the mean
            of their finite values (e.g. the mean over boundary bands).
        digits: decimals shown for measured values (after the x 100 of fractions).
        paper_digits: decimals shown for the paper's number; None prints it as printed in the paper.
    """

    key: str
    label: str
    unit: str
    fraction: bool
    higher_is_better: bool
    evaluator: str | None
    tasks: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    digits: int = 1
    paper_digits: int | None = 1

    @property
    def measured(self) -> bool:
        return self.evaluator is not None


def _percent(key: str, label: str, evaluator: str | None, tasks: tuple[str, ...], *source: str) -> Metric:
    return Metric(key, label, "%", True, True, evaluator, tasks if evaluator else (), source)


_SEMANTIC = ("semantic",)
_BOXES = ("detection", "instance", "panoptic")
_MASKS = ("instance",)

_ENTRIES = [
    # Cityscapes semantic scores (cityscapesscripts' definitions); the papers' "val" column is our mIoU: we
    # always evaluate the val split.
    _percent("mIoU", "mIoU", "semantic", _SEMANTIC, "mIoU"),
    _percent("mIoU_val", "mIoU (val)", "semantic", _SEMANTIC, "mIoU"),
    _percent("mIoU_test", "mIoU (test)", None, ()),
    _percent("mIoU_train", "mIoU (train)", None, ()),
    _percent("iIoU", "iIoU", "semantic", _SEMANTIC, "iIoU"),
    _percent("IoU_cat", "IoU (category)", "semantic", _SEMANTIC, "IoU_category"),
    _percent("iIoU_cat", "iIoU (category)", "semantic", _SEMANTIC, "iIoU_category"),
    # boundary-band mIoU by band width in pixels, and the mean over the four bands
    _percent("band_3", "band mIoU 3 px", "boundary", _SEMANTIC, "boundary_mIoU.3"),
    _percent("band_5", "band mIoU 5 px", "boundary", _SEMANTIC, "boundary_mIoU.5"),
    _percent("band_8", "band mIoU 8 px", "boundary", _SEMANTIC, "boundary_mIoU.8"),
    _percent("band_12", "band mIoU 12 px", "boundary", _SEMANTIC, "boundary_mIoU.12"),
    _percent("band_mean", "band mIoU (mean)", "boundary", _SEMANTIC,
             "boundary_mIoU.3", "boundary_mIoU.5", "boundary_mIoU.8", "boundary_mIoU.12"),
    # a gain printed by the paper (percentage points)
    Metric("gain", "gain", "points", False, True, None),
    # COCO AP (COCOeval), boxes and masks
    *(_percent(f"{name}_bbox", f"{name} (box)", "coco", _BOXES if name == "AP" else _BOXES[:2], f"bbox.{name}")
      for name in ("AP", "AP50", "AP75", "APs", "APm", "APl")),
    *(_percent(f"{name}_segm", f"{name} (mask)", "coco", _MASKS, f"segm.{name}")
      for name in ("AP", "AP50", "AP75", "APs", "APm", "APl")),
    # panoptic quality (panopticapi's rules)
    _percent("PQ", "PQ", "panoptic", ("panoptic",), "All.pq"),
    _percent("SQ", "SQ", "panoptic", ("panoptic",), "All.sq"),
    _percent("RQ", "RQ", "panoptic", ("panoptic",), "All.rq"),
    _percent("PQ_th", "PQ (things)", "panoptic", ("panoptic",), "Things.pq"),
    _percent("PQ_st", "PQ (stuff)", "panoptic", ("panoptic",), "Stuff.pq"),
    # complexity and speed, for every task
    Metric("params_m", "params", "M", False, False, "complexity", TASKS, ("params_m",), digits=2),
    Metric("gflops", "GFLOPs (GMACs)", "GMACs", False, False, "complexity", TASKS, ("gflops",)),
    Metric("fps", "FPS", "FPS", False, True, "speed", TASKS, ("fps",), paper_digits=None),
    Metric("latency_ms", "latency", "ms", False, False, "speed", TASKS, ("median_ms",)),
    Metric("fps_trt", "FPS (TensorRT)", "FPS", False, True, None, paper_digits=None),
    # a configuration the papers print as a column
    Metric("stride", "output stride", "", False, True, None, paper_digits=None),
]

#: key -> Metric, in the order above
METRICS: Mapping[str, Metric] = MappingProxyType({metric.key: metric for metric in _ENTRIES})
assert len(METRICS) == len(_ENTRIES), "a metric key is defined twice"
assert all(metric.evaluator in (*EVALUATORS, None) for metric in _ENTRIES), "a metric names an unregistered evaluator"


def metric(key: str) -> Metric:
    """The entry of `key`; KeyError naming the known keys."""
    try:
        return METRICS[key]
    except KeyError:
        raise KeyError(f"unknown metric {key!r} (known: {', '.join(METRICS)})") from None


def task_metrics(task: str) -> tuple[str, ...]:
    """The keys a run of `task` can measure, in vocabulary order."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    return tuple(m.key for m in METRICS.values() if task in m.tasks)


def of_evaluators(keys: Iterable[str], *evaluators: str) -> set[str]:
    """The keys among `keys` that one of `evaluators` produces."""
    return {key for key in keys if metric(key).evaluator in evaluators}


def _lookup(output: Mapping[str, Any], path: str, missing: Any = None) -> Any:
    value: Any = output
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return missing
        value = value[part]
    return value


def defined_in(outputs: Mapping[str, Mapping[str, Any]], key: str) -> bool:
    """Whether the evaluator outputs define `key` at all (a null is defined: an undefined score of this data); False
    for a score the data has no notion of, e.g. iIoU on a dataset without instances, whose output leaves it out."""
    entry = metric(key)
    output = outputs.get(entry.evaluator)
    if output is None:
        return False
    sentinel = object()
    return any(_lookup(output, path, sentinel) is not sentinel for path in entry.source)


def extract(outputs: Mapping[str, Mapping[str, Any]], keys: Iterable[str] | None = None) -> dict[str, float]:
    """Vocabulary values from evaluator outputs ({evaluator: its JSON output}).

    Every key of `keys` (default: all) whose evaluator is in `outputs` gets a value: the number at its
    `source`, or the mean of the finite numbers at several sources; NaN where the output has no number
    (an undefined score, written as null by the evaluators).
    """
    values = {}
    for key in METRICS if keys is None else keys:
        entry = metric(key)
        if entry.evaluator not in outputs:
            continue
        found = [_lookup(outputs[entry.evaluator], path) for path in entry.source]
        numbers = [float(v) for v in found if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(entry.source) == 1:
            values[key] = numbers[0] if numbers else math.nan
        else:
            finite = [v for v in numbers if not math.isnan(v)]
            values[key] = sum(finite) / len(finite) if finite else math.nan
    return values
