"""The one path from a registered model to its measured numbers: build, train, evaluate.

    pipeline = Pipeline.for_model("rt_fapn_r18", data_source("synthetic"), budget="smoke", seed=0)
    outcomes = pipeline.run([Evaluation(("mIoU", "params_m"))], checkpoint_root=Path("checkpoints"))

A `Pipeline` builds a registered model with the options its task and data need (class counts, image size,
the budget's detector sampling) and the user's weights (`checkpoint=`, the trained weights to evaluate or
to start from; `backbone_weights=`, ImageNet weights for the backbone), trains it under a recipe, budget and
seed (resuming from its checkpoints, once: a finished run is loaded), evaluates it through the task's
evaluators (one inference pass per input size) and measures its complexity and speed, and returns one
`Outcome` per requested `Evaluation`. `alignbench run-all`, `alignbench train` and the notebooks all use it.
When no evaluation asks for accuracy or speed (params / GMACs only, e.g. the paper rows of the default
`run-all`), nothing is trained and no checkpoint is written: the counts come from the model's definition
(`needs_trained_model`).

`training_key` names the trained weights: model, data, recipe (after the budget), seed, the budget's
detector options, the weights files' sha256 and the code identity (package version and model definition
fingerprint, bench.provenance), so weights trained by other code are never loaded.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from alignbench import models
from alignbench.bench import distributed, provenance
from alignbench.bench.errors import UserError
from alignbench.bench.evaluation.loop import STATISTICS_KEY
from alignbench.bench.profiling import complexity_at, measure_latency
from alignbench.bench.recipes import Budget, TrainConfig, training_config
from alignbench.bench.recipes import budget as get_budget
from alignbench.bench.suites import default_recipe
from alignbench.bench.tasks import DataSource, task_runner
from alignbench.bench.train import load_weights, train
from alignbench.metrics import vocabulary

log = logging.getLogger(__name__)

RANDOM_INIT_NOTE = ("trained from random initialisation (no --backbone-weights or --checkpoint): the papers start from "
                    "ImageNet-pretrained backbones, so these numbers are not comparable with theirs")


@dataclass(frozen=True)
class Evaluation:
    """What to measure on a trained model: vocabulary keys, and where.

    eval_size: accuracy input size (None: each image at its own size); input_size: where speed is timed;
    flops_size: where GMACs are counted (both default to the model's paper input size).
    """

    metrics: tuple[str, ...]
    eval_size: tuple[int, int] | None = None
    input_size: tuple[int, int] | None = None
    flops_size: tuple[int, int] | None = None


@dataclass
class Outcome:
    """The numbers of one Evaluation (vocabulary keys, plus `class_IoU`, `n_images`, `timing` where
    measured) and when they were made."""

    metrics: dict
    started_at: str
    finished_at: str
    duration_s: float  # from the start of the pipeline's run (training included) to the end of this evaluation
    code: dict = field(default_factory=dict)  # provenance.code_identity of the model as trained
    statistics: dict | None = None  # per-image statistics of the accuracy metrics (bench.evaluation.loop.STATISTICS_KEY)
    training_log: Path | None = None  # the run's train_log.jsonl (kept after a smoke budget deletes the weights)


def needs_trained_model(evaluations: list[Evaluation]) -> bool:
    """Whether an evaluation asks for accuracy or speed (a trained model, or given weights, to run); params and
    GMACs alone are counted from the model's definition."""
    wanted = {metric for evaluation in evaluations for metric in evaluation.metrics}
    return bool(vocabulary.of_evaluators(wanted, *vocabulary.evaluators_measuring("accuracy", "speed")))


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Pipeline:
    """Build, train and evaluate one registered model under one recipe, budget and seed (module docstring)."""

    def __init__(
        self,
        model: str,
        source: DataSource,
        train: TrainConfig,
        budget: Budget,
        seed: int = 0,
        *,
        options: dict | None = None,
        checkpoint: str | Path | None = None,
        backbone_weights: str | Path | None = None,
        train_model: bool = True,
        device: str = "cpu",
        progress: bool = False,
        eval_split: str = "val",
        runner=None,
    ) -> None:
        """`eval_split`: the split evaluated. `runner`: the task runner to use (bench.tasks.task_runner(task, source,
        eval_split) by default), shared by pipelines on one data source so that its eval split is read once."""
        try:
            self.info = models.get_info(model)
        except ValueError as error:
            raise UserError(str(error)) from None
        self.name, self.source, self.train_config, self.budget, self.seed = model, source, train, budget, seed
        self.user_options = dict(options or {})
        self.checkpoint = _existing(checkpoint, "--checkpoint")
        self.backbone_weights = _existing(backbone_weights, "--backbone-weights")
        self.train_model = train_model
        self.device, self.progress = device, progress
        self.runner = runner or task_runner(self.info.task, source, eval_split)

    @classmethod
    def for_model(
        cls, model: str, source: DataSource, *, recipe: str | None = None, budget: str = "smoke", overrides: dict | None = None, **kwargs
    ) -> Pipeline:
        """A pipeline with the model's recipe (`recipe`, else that of the first built-in suite that runs it)
        scaled to the named budget."""
        config = training_config(recipe or default_recipe(model), budget, overrides)
        return cls(model, source, config, get_budget(budget), **kwargs)

    # --- identity ------------------------------------------------------------------------------------------

    @cached_property
    def build_options(self) -> dict:
        """The builder keywords: the task's (class counts, image size, the budget's detector options), then
        the user's."""
        with distributed.main_first():  # rank 0 exports shared files (the synthetic scenes' COCO export) first
            options = self.runner.build_options(self.train_config, self.budget)
        return {**options, **self.user_options}

    @cached_property
    def code(self) -> dict:
        """provenance.code_identity of the model as built here."""
        return provenance.code_identity(self.name, self.build_options)

    @cached_property
    def weights(self) -> dict:
        """The weights files given, by sha256 (empty: random initialisation)."""
        files = {"checkpoint": self.checkpoint, "backbone_weights": self.backbone_weights}
        return {key: provenance.file_sha256(path) for key, path in files.items() if path is not None}

    @property
    def random_init(self) -> bool:
        return not self.weights

    @cached_property
    def training_key(self) -> str:
        return provenance.digest({
            "model": self.name, "data": self.source.description, "train": self.train_config.to_json(), "seed": self.seed,
            "detector_options": self.budget.detector_options, "options": self.user_options, "weights": self.weights,
            "code": self.code,
        })

    # --- the steps -----------------------------------------------------------------------------------------

    def build(self) -> nn.Module:
        """The model with its options and the given weights, initialised from the seed (the same initial
        weights on every rank)."""
        weights = {key: str(path) for key, path in (("checkpoint", self.checkpoint), ("backbone_weights", self.backbone_weights))
                   if path is not None}
        legacy = {key: path for key, path in weights.items() if key not in inspect.signature(models.build).parameters}
        torch.manual_seed(self.seed)
        try:
            # the weights keywords reach the builder only when given
            model = models.build(self.name, **self.build_options, **{k: v for k, v in weights.items() if k not in legacy})
        except ValueError as error:  # the models' one-line errors: unknown option, unreadable or unfit weights
            raise UserError(f"{self.name}: {error}") from None
        if "backbone_weights" in legacy:
            raise UserError("--backbone-weights: this version of alignbench.models cannot load backbone weights")
        if "checkpoint" in legacy:  # models.build without `checkpoint=`: our own checkpoints only
            load_weights(model, legacy["checkpoint"])
        return model

    def model(self, checkpoint_root: Path | None = None) -> nn.Module:
        """The built model, trained unless the pipeline evaluates given weights (`train_model` False); training
        checkpoints go to `checkpoint_root / training_key` and a finished run there is loaded, not repeated."""
        if self.train_model and checkpoint_root is None:
            raise ValueError("a pipeline that trains needs a checkpoint_root")
        directory = self.checkpoint_dir(checkpoint_root) if self.train_model else None  # its key first: then build from the seed
        model = self.build()
        if directory is not None:
            with distributed.main_first():
                training_set, collate = self.runner.training_set(self.train_config, self.seed)
            train(model, training_set, collate, self.train_config, directory, device=self.device,
                  progress=self.progress, description=f"{self.name} (seed {self.seed})")
        return model.to(self.device).eval()

    def checkpoint_dir(self, checkpoint_root: Path) -> Path:
        return Path(checkpoint_root) / f"{self.name}-{self.training_key}"

    def run(self, evaluations: list[Evaluation], checkpoint_root: Path | None = None, complexity_cache=None) -> list[Outcome]:
        """Build and train (or load) once, then one Outcome per evaluation (see `outcomes`)."""
        return list(self.outcomes(evaluations, checkpoint_root, complexity_cache))

    def outcomes(self, evaluations: list[Evaluation], checkpoint_root: Path | None = None, complexity_cache=None) -> Iterator[Outcome]:
        """Build and train (or load) once, then yield one Outcome per evaluation as soon as it is measured;
        evaluations at the same input size share one inference pass. The budget's throwaway weights (smoke)
        are deleted after the last one."""
        started_at, begin = now(), time.perf_counter()
        trains = self.trains(evaluations)
        if needs_trained_model(evaluations):
            model = self.model(checkpoint_root)
        elif self.weights:  # params / GMACs only: given weights are still loaded, so a bad file fails here as in a full run
            model = self.build()
        else:  # params / GMACs only, counted from the model's definition: nothing to build, train or save
            model = None
        accuracy: dict[tuple | None, dict] = {}
        for evaluation in evaluations:
            wanted = set(evaluation.metrics)
            metrics: dict = {}
            if vocabulary.of_evaluators(wanted, *vocabulary.evaluators_measuring("accuracy")):
                if evaluation.eval_size not in accuracy:
                    accuracy[evaluation.eval_size] = self.runner.evaluate(model, self.device, self.budget, evaluation.eval_size,
                                                                          progress=self.progress)
                metrics.update(accuracy[evaluation.eval_size])
            statistics = metrics.pop(STATISTICS_KEY, None)
            if distributed.is_main():
                metrics.update(self._complexity(model, evaluation, wanted, complexity_cache))
            yield Outcome(metrics, started_at, now(), time.perf_counter() - begin, self.code, statistics,
                          self._keep_training_log(checkpoint_root) if trains else None)
        if trains and checkpoint_root is not None and not self.budget.keep_weights and distributed.is_main():
            shutil.rmtree(self.checkpoint_dir(checkpoint_root), ignore_errors=True)

    def trains(self, evaluations: list[Evaluation]) -> bool:
        """Whether `outcomes(evaluations)` trains: no given weights to evaluate, and something to measure on a
        trained model (`needs_trained_model`)."""
        return self.train_model and needs_trained_model(evaluations)

    def _keep_training_log(self, checkpoint_root: Path | None) -> Path | None:
        """A copy of the run's train_log.jsonl in `logs/` beside `checkpoint_root` (beside the results store for
        run-all; outside the checkpoints that a smoke budget deletes), or None when this pipeline did not train."""
        if not self.train_model or checkpoint_root is None or not distributed.is_main():
            return None
        log_file = self.checkpoint_dir(checkpoint_root) / "train_log.jsonl"
        if not log_file.is_file():
            return None
        kept = Path(checkpoint_root).resolve().parent / "logs" / f"{self.name}-{self.training_key}.jsonl"
        kept.parent.mkdir(parents=True, exist_ok=True)
        temporary = kept.with_name(f".{kept.name}.tmp")
        shutil.copyfile(log_file, temporary)
        temporary.replace(kept)
        return kept

    def _complexity(self, model: nn.Module, evaluation: Evaluation, wanted: set[str], cache) -> dict:
        """Params and GMACs (cached per model, builder options, size and code identity in `cache`, a ResultsStore)
        and speed (of `model`, which is None only when no speed is asked for)."""
        metrics: dict = {}
        counted = vocabulary.of_evaluators(wanted, "complexity")
        if counted:
            size = tuple(evaluation.flops_size or self.info.flops_input_size or self.info.input_size)
            # counted as `alignbench profile` builds the model: default options (19 classes), frozen backbone BN, plus
            # the user's builder options (a suite row's `options`, e.g. narrower necks), which the code identity names
            code = provenance.digest(provenance.code_identity(self.name, self.user_options))
            figures = cache.complexity(self.name, size, code) if cache is not None else None
            if figures is None and counted == {"params_m"}:
                # parameters alone need no trace (a FLOP trace of a large model at the paper's size takes minutes on a CPU)
                figures = {"params_m": models.measured_params(self.name, **self.user_options) / 1e6}
            elif figures is None:
                complexity = complexity_at(self.name, size, options=self.user_options)
                figures = {"params_m": complexity.params_m, "gflops": complexity.gmacs, "other_gops": complexity.other_ops / 1e9}
                if cache is not None:
                    cache.add_complexity(self.name, size, code, figures)
            metrics.update(vocabulary.extract({"complexity": figures}, counted))
        timed = vocabulary.of_evaluators(wanted, "speed")
        if timed:
            size = tuple(evaluation.input_size or self.info.input_size)
            iterations = self.budget.timing_iterations
            latency = measure_latency(model, size, device=self.device, warmup=max(1, iterations // 3), iterations=iterations)
            metrics.update(vocabulary.extract({"speed": latency.to_json()}, timed))
            metrics["timing"] = latency.to_json()
        return metrics


def _existing(path: str | Path | None, option: str) -> Path | None:
    if path is None:
        return None
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{option} {path}: file not found")
    return path.resolve()


def random_init_warning(count: int, budget: str) -> None:
    """The one line `--budget paper` prints when it trains models from random initialisation."""
    if budget == "paper" and count:
        log.warning("--budget paper: %d model(s) %s", count, RANDOM_INIT_NOTE)
