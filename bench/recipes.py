"""Training recipes (the papers' schedules) and budgets (how much of a recipe a run can afford).

A recipe is what a paper states; a budget scales it: `paper` runs the recipe as stated, `short` a
GPU-minutes version (a few thousand iterations), `smoke` a CPU-minutes version (a handful of iterations
on tiny crops) that exercises the whole pipeline but measures nothing about accuracy. The learning rate
follows the linear scaling rule when a budget changes the batch size.

The `miniature` recipes (`miniature` on the synthetic scenes, `miniature_camvid` on CamVid) and budget are not a
paper's: they are the laptop protocol of the default `alignbench run-all` (docs/miniature_protocol.md), ResNet-18
pyramids trained from scratch, tuned for learnability and low seed-to-seed variance on the FPN baseline only.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, replace

from pydantic import TypeAdapter, ValidationError

from alignbench.bench.errors import UserError


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (hashed into the result's provenance)."""

    iterations: int
    batch_size: int
    crop: tuple[int, int]  # (H, W) training crop; detection: the image size (min_size, max_size)
    scales: tuple[float, ...]  # random rescale: (low, high) range, or a list of discrete scales (3+ values)
    base_lr: float
    weight_decay: float
    schedule: str  # "poly" (power 0.9) or "step"
    steps: tuple[int, ...] = ()  # iterations where a step schedule multiplies the lr by 0.1
    momentum: float = 0.9
    optimizer: str = "sgd"  # "sgd" (the papers': momentum SGD) or "adamw" (the miniature protocol's)
    flip: bool = True
    frozen_bn: bool = False  # the paper freezes ImageNet BN; applied only with pre-trained backbone weights
    freeze_backbone: bool = False  # FPT fixes the backbone (fpt.md section 4.2, "Setting")
    warmup_iterations: int = 0
    amp: bool = True  # used on CUDA only: float16 autocast with a gradient scaler
    # bfloat16 autocast on the CPU: about 1.5x faster training steps where the CPU has bfloat16 units (Intel AMX /
    # AVX-512 BF16, e.g. Sapphire Rapids; measured on this project's CPU), much slower where it has none
    cpu_bf16: bool = False
    # AdamW's fused kernel (torch's `fused=True`): the same update in one pass over the parameters, a third of the
    # optimizer's time (13% of a bfloat16 CamVid step on this CPU); off in the older recipes, whose numbers it would
    # change in the last bits
    fused_optimizer: bool = False
    class_weighting: str = "none"  # "none" or "sqrt_median_frequency": the loss's class weights (bench.tasks.class_weights)
    checkpoint_every: int = 1000
    source: str = ""  # where the recipe comes from

    def lr_at(self, iteration: int) -> float:
        """The learning rate of `iteration` (0-based), with linear warm-up."""
        if self.schedule == "poly":
            lr = self.base_lr * (1.0 - iteration / self.iterations) ** 0.9
        elif self.schedule == "step":
            lr = self.base_lr * 0.1 ** sum(iteration >= step for step in self.steps)
        else:
            raise ValueError(f"unknown schedule {self.schedule!r}")
        if iteration < self.warmup_iterations:
            lr *= (iteration + 1) / self.warmup_iterations
        return lr

    def to_json(self) -> dict:
        return asdict(self)


RECIPES: dict[str, TrainConfig] = {
    # FaPN supplementary section 1: SGD 0.9, wd 1e-4, 65K iterations, lr 0.01 divided by 10 at 40K and 55K,
    # frozen ImageNet BN, flip + scale augmentation. Batch 32, 512x1024 crops and scales 0.5-2.0 are
    # detectron2's PointRend Cityscapes semantic config, on which FaPN's code is based.
    "fapn_semantic": TrainConfig(
        iterations=65_000, batch_size=32, crop=(512, 1024), scales=(0.5, 2.0), base_lr=0.01, weight_decay=1e-4,
        schedule="step", steps=(40_000, 55_000), frozen_bn=True, warmup_iterations=1000, checkpoint_every=5000,
        source="FaPN supplementary section 1; detectron2 PointRend Cityscapes config",
    ),
    # FaPN supplementary section 2: SGD 0.9, wd 5e-4, batch 16, lr 0.01 poly 0.9, 40K iterations,
    # scales {0.75, ..., 2.0}, crops 1536x768 (W x H).
    "fapn_realtime": TrainConfig(
        iterations=40_000, batch_size=16, crop=(768, 1536), scales=(0.75, 1.0, 1.25, 1.5, 1.75, 2.0), base_lr=0.01,
        weight_decay=5e-4, schedule="poly", checkpoint_every=5000, source="FaPN supplementary section 2",
    ),
    # FaPN supplementary section 1: 90K iterations, lr 0.02 -> 0.002 at 60K -> 0.0002 at 80K, wd 1e-4,
    # frozen BN; batch 16 and 800x1333 images are detectron2's defaults.
    "fapn_detection": TrainConfig(
        iterations=90_000, batch_size=16, crop=(800, 1333), scales=(1.0, 1.0), base_lr=0.02, weight_decay=1e-4,
        schedule="step", steps=(60_000, 80_000), frozen_bn=True, warmup_iterations=1000, checkpoint_every=5000,
        source="FaPN supplementary section 1; detectron2 defaults",
    ),
    # SFNet section 4 "Implementation details": SGD batch 16, momentum 0.9, wd 5e-4, 50K iterations,
    # lr 0.01 poly 0.9, flip, scales 0.75-2.0, 1024x1024 crops.
    "sfnet": TrainConfig(
        iterations=50_000, batch_size=16, crop=(1024, 1024), scales=(0.75, 2.0), base_lr=0.01, weight_decay=5e-4,
        schedule="poly", checkpoint_every=5000, source="SFNet section 4, implementation details",
    ),
    # FPT section 4.2: lr 0.01 poly 0.9, wd 5e-4, 8 GPUs, 120 epochs on Cityscapes (2975 images; with one
    # image per GPU as in its section 4.1, batch 8: ~44.6K iterations), 969x969 crops, flip, scales 0.5-2.0,
    # backbone parameters fixed.
    "fpt_semantic": TrainConfig(
        iterations=44_625, batch_size=8, crop=(969, 969), scales=(0.5, 2.0), base_lr=0.01, weight_decay=5e-4,
        schedule="poly", freeze_backbone=True, frozen_bn=True, checkpoint_every=5000,
        source="FPT section 4.2 (semantic segmentation)",
    ),
    # FPT section 4.1: SGD on 8 GPUs, one image each, wd 1e-4, momentum 0.9; detection lr 0.05 for 80K
    # iterations then 0.005 for 20K.
    "fpt_detection": TrainConfig(
        iterations=100_000, batch_size=8, crop=(800, 1333), scales=(1.0, 1.0), base_lr=0.05, weight_decay=1e-4,
        schedule="step", steps=(80_000,), frozen_bn=True, warmup_iterations=1000, checkpoint_every=5000,
        source="FPT section 4.1",
    ),
    # Not a paper's recipe: the miniature protocol (docs/miniature_protocol.md). AdamW with a linear warm-up
    # and poly decay learns from scratch within a few hundred iterations where the papers' SGD does not
    # (measured on the FPN baseline only). A warm-up of half the run (150 of 300 iterations) gave the FPN
    # baseline a higher mean and a smaller seed-to-seed spread than 20, 50, 60 or 100 iterations.
    # 96x192 crops of the 128x256 scenes: more iterations per CPU second.
    "miniature": TrainConfig(
        iterations=300, batch_size=4, crop=(96, 192), scales=(0.75, 1.25), base_lr=6e-3, weight_decay=1e-4,
        schedule="poly", optimizer="adamw", warmup_iterations=150, checkpoint_every=100,
        source="alignbench miniature protocol (docs/miniature_protocol.md), tuned on the FPN baseline only",
    ),
    # Not a paper's recipe: the miniature protocol on CamVid (SegNet's 480 x 360 frames; docs/miniature_protocol.md),
    # tuned on the FPN baseline only, on the train and val splits only. Random scale around 0.5 (the frames at about
    # 192 x 256, the protocol's input size), 128 x 160 crops, a warm-up of two thirds of the run (it gave the highest
    # mean and the smallest spread over 5 seeds of the settings tried), the loss weighted by the square root of
    # median frequency balancing (poles, signs, pedestrians and bicyclists are rare), bfloat16 autocast on the CPU
    # (1.5x faster steps on this project's CPU) and the fused AdamW kernel.
    "miniature_camvid": TrainConfig(
        iterations=380, batch_size=8, crop=(128, 160), scales=(0.375, 0.625), base_lr=6e-3, weight_decay=1e-4,
        schedule="poly", optimizer="adamw", warmup_iterations=250, checkpoint_every=100, cpu_bf16=True, fused_optimizer=True,
        class_weighting="sqrt_median_frequency",
        source="alignbench miniature protocol on CamVid (docs/miniature_protocol.md), tuned on the FPN baseline only",
    ),
}


@dataclass(frozen=True)
class Budget:
    """How much of a recipe to run, and how to evaluate."""

    name: str
    iterations: int | None  # None: the recipe's
    batch_size: int | None
    max_crop: tuple[int, int] | None  # cap the crop (smoke: tiny)
    eval_max_images: int | None  # None: the whole split
    eval_max_side: int | None  # downscale evaluation images so their longer side is at most this
    timing_iterations: int
    keep_weights: bool  # keep trained weights after evaluation (smoke runs delete them: GBs of throwaway files)
    note: str = ""
    # False: accuracy measured under this budget is no result (smoke); reports show "—" instead of it
    measures_accuracy: bool = True
    # torchvision R-CNN keywords for this budget (None: the recipe's, i.e. torchvision's / detectron2's COCO
    # defaults). The smoke budget's 64 x 128 images hold about 2,000 anchors in all, so the COCO-size
    # proposal and RoI-sample counts (2,000 proposals, 512 RoIs per image) would keep nearly every anchor
    # and spend most of the time in the box head; smoke samples fewer.
    detector_options: dict | None = None

    def apply(self, recipe: TrainConfig) -> TrainConfig:
        """The recipe scaled to this budget (linear lr scaling with the batch; schedule steps scaled too)."""
        if self.iterations is None and self.batch_size is None and self.max_crop is None:
            return recipe
        iterations = self.iterations or recipe.iterations
        batch = self.batch_size or recipe.batch_size
        crop = recipe.crop
        if self.max_crop is not None:
            crop = (min(crop[0], self.max_crop[0]), min(crop[1], self.max_crop[1]))
        ratio = iterations / recipe.iterations
        return replace(
            recipe,
            iterations=iterations,
            batch_size=batch,
            crop=crop,
            base_lr=recipe.base_lr * batch / recipe.batch_size,
            steps=tuple(max(1, round(step * ratio)) for step in recipe.steps),
            warmup_iterations=min(recipe.warmup_iterations, iterations // 10),
            checkpoint_every=max(1, min(recipe.checkpoint_every, iterations // 2)),
        )


BUDGETS: dict[str, Budget] = {
    "smoke": Budget(
        "smoke", iterations=6, batch_size=2, max_crop=(64, 128), eval_max_images=4,
        eval_max_side=512, timing_iterations=3, keep_weights=False,
        note="CPU minutes: 6 iterations on 64x128 crops; exercises the pipeline, says nothing about accuracy",
        measures_accuracy=False,
        detector_options={"rpn_pre_nms_top_n_train": 400, "rpn_post_nms_top_n_train": 200,
                          "rpn_pre_nms_top_n_test": 400, "rpn_post_nms_top_n_test": 200,
                          "box_batch_size_per_image": 64},
    ),
    "miniature": Budget(
        "miniature", iterations=None, batch_size=None, max_crop=None, eval_max_images=None,
        eval_max_side=None, timing_iterations=10, keep_weights=True,
        note="the miniature protocol's own recipe as stated: CPU minutes per model",
    ),
    "short": Budget(
        "short", iterations=2000, batch_size=8, max_crop=(512, 1024), eval_max_images=None,
        eval_max_side=None, timing_iterations=50, keep_weights=True, note="GPU minutes: 2000 iterations, batch 8",
    ),
    "paper": Budget(
        "paper", iterations=None, batch_size=None, max_crop=None, eval_max_images=None,
        eval_max_side=None, timing_iterations=100, keep_weights=True, note="the paper's schedule",
    ),
}


def recipe(name: str) -> TrainConfig:
    try:
        return RECIPES[name]
    except KeyError:
        raise UserError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None


def budget(name: str) -> Budget:
    try:
        return BUDGETS[name]
    except KeyError:
        raise UserError(f"--budget: unknown budget {name!r}; choose from {', '.join(BUDGETS)}") from None


def training_config(recipe_name: str, budget_name: str, overrides: dict | None = None) -> TrainConfig:
    """The recipe, with a suite row's overrides, scaled to the budget."""
    config = recipe(recipe_name)
    if overrides:
        known = set(TrainConfig.__dataclass_fields__)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UserError(f"unknown training option(s) {', '.join(unknown)}")
        converted = {key: tuple(value) if isinstance(value, list) else value for key, value in overrides.items()}
        config = replace(config, **converted)
    return budget(budget_name).apply(config)




# --- `--set key=value` overrides ------------------------------------------------------------------------

# Short names users type (mmsegmentation / detectron2 habits) for the TrainConfig / Budget fields.
OVERRIDE_ALIASES = {"batch": "batch_size", "lr": "base_lr", "eval_images": "eval_max_images"}
BUDGET_OVERRIDES = ("eval_max_images", "eval_max_side", "timing_iterations")
EVALUATION_OVERRIDES = ("eval_size",)  # the evaluation input size (H, W), None: each image's own size
_POSITIVE = {"iterations", "batch_size", "base_lr", "crop", "eval_size", "eval_max_images", "eval_max_side",
             "timing_iterations", "checkpoint_every"}


@dataclass(frozen=True)
class Overrides:
    """Validated `--set` values: TrainConfig fields, Budget evaluation fields and the evaluation size."""

    train: dict
    budget: dict
    evaluation: dict

    def to_json(self) -> dict:
        """For the provenance and the config hash (tuples as lists, keys sorted by json.dumps)."""
        return {part: {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
                for part, values in (("train", self.train), ("budget", self.budget), ("evaluation", self.evaluation)) if values}

    def __bool__(self) -> bool:
        return bool(self.train or self.budget or self.evaluation)


NO_OVERRIDES = Overrides({}, {}, {})


def parse_overrides(pairs: list[str] | None) -> Overrides:
    """Parse `key=value` strings (sizes as HxW or H,W; lists comma-separated) into typed, checked values.

    Types come from the dataclass fields and are coerced by pydantic; a bad key or value is a UserError naming
    it and the accepted keys.
    """
    train_types = {k: v for k, v in typing.get_type_hints(TrainConfig).items() if k != "source"}
    budget_types = {k: v for k, v in typing.get_type_hints(Budget).items() if k in BUDGET_OVERRIDES}
    evaluation_types = {"eval_size": tuple[int, int] | None}
    known = sorted({**train_types, **budget_types, **evaluation_types, **OVERRIDE_ALIASES})
    parts: dict[str, dict] = {"train": {}, "budget": {}, "evaluation": {}}
    for pair in pairs or []:
        key, separator, text = pair.partition("=")
        key = key.strip()
        if not separator or not key:
            raise UserError(f"--set {pair!r}: expected key=value (keys: {', '.join(known)})")
        field = OVERRIDE_ALIASES.get(key, key)
        groups = {"train": train_types, "budget": budget_types, "evaluation": evaluation_types}
        part = next((name for name, types in groups.items() if field in types), None)
        if part is None:
            raise UserError(f"--set {key}: unknown key (keys: {', '.join(known)})")
        types = groups[part]
        text = text.strip()
        raw: object = None if text.lower() in ("none", "null") else text
        if isinstance(raw, str) and ("x" in raw.lower() or "," in raw) and field not in ("schedule",):
            raw = [item.strip() for item in raw.lower().replace("x", ",").split(",") if item.strip()]
        try:
            value = TypeAdapter(types[field]).validate_python(raw)
        except ValidationError as error:
            problem = error.errors()[0]["msg"]
            raise UserError(f"--set {key}={text}: {problem} (expected {_type_name(types[field])})") from None
        values = value if isinstance(value, tuple) else (value,)
        if field in _POSITIVE and any(isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0 for v in values):
            raise UserError(f"--set {key}={text}: must be positive")
        parts[part][field] = value
    return Overrides(parts["train"], parts["budget"], parts["evaluation"])


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def apply_overrides(config: TrainConfig, budget_: Budget, overrides: Overrides) -> tuple[TrainConfig, Budget]:
    """`config` and `budget_` with the overrides applied on top of the budget's scaling.

    A new batch scales the learning rate linearly (unless `lr` is given too), as the budgets do; a new iteration
    count scales a step schedule's steps and the warm-up, as the budgets do.
    """
    changes = dict(overrides.train)
    if "batch_size" in changes and "base_lr" not in changes:
        changes["base_lr"] = config.base_lr * changes["batch_size"] / config.batch_size
    if "iterations" in changes:
        ratio = changes["iterations"] / config.iterations
        changes.setdefault("steps", tuple(max(1, round(step * ratio)) for step in config.steps))
        changes.setdefault("warmup_iterations", min(config.warmup_iterations, changes["iterations"] // 10))
        changes.setdefault("checkpoint_every", max(1, min(config.checkpoint_every, changes["iterations"] // 2)))
    return replace(config, **changes), replace(budget_, **overrides.budget)
