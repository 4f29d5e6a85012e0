"""The trainer: SGD with the papers' schedules, augmentation, AMP on CUDA, checkpoints and resume.

Batches are a pure function of (seed, iteration): sample k of the run is drawn and augmented with a
generator seeded by (seed, k). A run killed at any point therefore resumes from its last checkpoint and
continues exactly as if it had never stopped. Checkpoints are written atomically (temporary file +
rename) every `checkpoint_every` iterations; `final.pt` marks a finished run.

Under torch.distributed (torchrun, or a Slurm job) the model is wrapped in DistributedDataParallel and
`config.batch_size` is the total batch over all ranks: see `train`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from alignbench.bench import distributed
from alignbench.bench.data.catalog import SemanticSample
from alignbench.bench.data.images import image_to_tensor
from alignbench.bench.errors import UserError
from alignbench.bench.recipes import TrainConfig
from alignbench.metrics.labels import IGNORE_TRAIN_ID

log = logging.getLogger(__name__)

FINAL = "final.pt"
LAST = "last.pt"
LOG = "train_log.jsonl"  # one JSON object per iteration: iteration, loss and its terms, lr, seconds


# --- data ------------------------------------------------------------------------------------------------


def random_scale(rng: np.random.Generator, scales: tuple[float, ...]) -> float:
    """A (low, high) range draws uniformly; three or more values are a list to choose from."""
    if len(scales) == 2:
        return float(rng.uniform(*scales))
    return float(rng.choice(scales))


def augment_semantic(
    image: np.ndarray, train_ids: np.ndarray, config: TrainConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random rescale, random crop (padding with ignore where the image is smaller) and horizontal flip."""
    scale = random_scale(rng, config.scales)
    height, width = train_ids.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != (width, height):
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        train_ids = cv2.resize(train_ids, size, interpolation=cv2.INTER_NEAREST)
    crop_h, crop_w = config.crop
    pad_h, pad_w = max(0, crop_h - train_ids.shape[0]), max(0, crop_w - train_ids.shape[1])
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        train_ids = cv2.copyMakeBorder(train_ids, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=IGNORE_TRAIN_ID)
    top = int(rng.integers(0, train_ids.shape[0] - crop_h + 1))
    left = int(rng.integers(0, train_ids.shape[1] - crop_w + 1))
    image = image[top : top + crop_h, left : left + crop_w]
    train_ids = train_ids[top : top + crop_h, left : left + crop_w]
    if config.flip and rng.random() < 0.5:
        image, train_ids = image[:, ::-1], train_ids[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(train_ids)


# Decoded training samples kept in memory per process when the whole split fits in this: a small dataset (CamVid's
# 367 frames: about 250 MB) is decoded once instead of at every draw (PNG decoding was an eighth of a CPU training
# step on CamVid). Larger splits (Cityscapes: 18 GB decoded) are decoded at each draw.
DECODED_CACHE_BYTES = 512 << 20


class SemanticTrainingSet(torch.utils.data.Dataset):
    """Sample k of a run: a random training frame, augmented, drawn from generator (seed, k)."""

    def __init__(self, dataset, config: TrainConfig, seed: int) -> None:
        """`dataset`: decoded SemanticSamples by index (bench.data.catalog.SemanticSplit)."""
        self.dataset, self.config, self.seed = dataset, config, seed
        self._decoded: dict[int, SemanticSample] = {}
        self._keep_decoded: bool | None = None  # decided on the first sample

    def __len__(self) -> int:
        return self.config.iterations * self.config.batch_size

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, k])
        sample = self._sample(int(rng.integers(len(self.dataset))))
        image, train_ids = augment_semantic(sample.image, sample.train_ids, self.config, rng)
        return image_to_tensor(image), torch.from_numpy(train_ids.astype(np.int64))

    def _sample(self, index: int) -> SemanticSample:
        """The decoded frame `index`, kept when the whole split fits DECODED_CACHE_BYTES (augmentation never writes
        into it: it resizes, crops and copies)."""
        if index in self._decoded:
            return self._decoded[index]
        sample = self.dataset[index]
        if self._keep_decoded is None:
            size = sample.image.nbytes + sample.label_ids.nbytes + sample.train_ids.nbytes
            self._keep_decoded = len(self.dataset) * size <= DECODED_CACHE_BYTES
        if self._keep_decoded:
            self._decoded[index] = sample
        return sample


def semantic_collate(items) -> tuple[torch.Tensor, torch.Tensor]:
    images, targets = zip(*items)
    return torch.stack(images), torch.stack(targets)


# --- checkpoints -----------------------------------------------------------------------------------------


def save_atomic(payload: dict, path: Path) -> None:
    """torch.save through a temporary file, fsync and a rename: a kill or a full disk never leaves a
    half-written checkpoint, and the previous checkpoint at `path` stays as it was until the new one is
    complete. A write error (a full disk) removes the temporary file and becomes one `UserError` line
    naming `path`."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # torch.save into a file object of ours: its writes go through Python, so a full disk is an OSError
        with open(temporary, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        cause = _os_error_in(error)
        if cause is None:
            raise
        raise UserError(f"{path}: cannot write the checkpoint ({cause.strerror or cause})") from None


def _os_error_in(error: BaseException) -> OSError | None:
    """The OSError behind `error`: torch.save's zip writer reports a failed write (a full disk) as a
    RuntimeError raised while it closes the file, with the OSError as its context."""
    while error is not None:
        if isinstance(error, OSError):
            return error
        error = error.__cause__ or error.__context__
    return None


def load_checkpoint(path: Path, device: torch.device) -> dict:
    """A training checkpoint (`last.pt`) written by `save_atomic`; a damaged file is one `UserError` line."""
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # torch raises several types for damaged files
        raise UserError(f"{path}: damaged checkpoint ({type(error).__name__}); delete it to restart this run") from None
    if not isinstance(state, dict) or not {"iteration", "model", "optimizer", "scaler"} <= set(state):
        raise UserError(f"{path}: not a training checkpoint of alignbench; delete it to restart this run")
    return state


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a checkpoint of ours ({"model": state_dict, ...}) or a plain state dict; keys must match."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: weights file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for non-checkpoint files
        raise UserError(f"{path}: not a PyTorch checkpoint ({type(error).__name__})") from None
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state dict or a checkpoint with a 'model' entry")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        missing = ", ".join(result.missing_keys[:5]) + (" ..." if len(result.missing_keys) > 5 else "")
        unexpected = ", ".join(result.unexpected_keys[:5]) + (" ..." if len(result.unexpected_keys) > 5 else "")
        raise UserError(f"{path}: weights do not fit the model (missing: {missing or 'none'}; unexpected: {unexpected or 'none'})")


# --- training --------------------------------------------------------------------------------------------


def to_device(value: Any, device: torch.device) -> Any:
    """Tensors inside (nested) lists, tuples and dicts moved to `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(item, device) for item in value)
    return value


def per_rank_batch(total: int, world: int) -> int:
    """The batch each of `world` ranks takes so that together they make the `total` batch."""
    if total % world:
        raise UserError(
            f"the total batch of {total} images cannot be split evenly over {world} processes; "
            f"use a process count that divides {total}"
        )
    return total // world


class RankSampler(torch.utils.data.Sampler):
    """Sample indices of this rank for iterations start..iterations-1: global batch t holds samples
    t * total .. t * total + total - 1 and rank r takes its r-th slice of `per_rank` of them."""

    def __init__(self, start: int, iterations: int, total: int, rank: int, per_rank: int) -> None:
        self.start, self.iterations, self.total, self.rank, self.per_rank = start, iterations, total, rank, per_rank

    def __len__(self) -> int:
        return (self.iterations - self.start) * self.per_rank

    def __iter__(self):
        for iteration in range(self.start, self.iterations):
            first = iteration * self.total + self.rank * self.per_rank
            yield from range(first, first + self.per_rank)


class _LossForward(nn.Module):
    """DDP synchronises gradients for what runs inside its forward(); our models train through
    `loss(inputs, targets)`, so this wrapper's forward calls it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs, targets):
        return self.model.loss(inputs, targets)


@dataclass
class TrainingOutcome:
    iterations: int  # iterations run by this call (0 when the run had already finished)
    resumed_from: int  # iteration the run started from (0 for a fresh run)
    final_loss: float | None


class TrainingLog:
    """The training log of a run: `train_log.jsonl` in its checkpoint folder (one JSON line per iteration, what
    mmsegmentation / detectron2 users grep and plot), plus TensorBoard event files when tensorboard is installed.

    On resume from iteration `start`, lines of iterations >= `start` (run after the last checkpoint, before a
    kill) are dropped, so the log holds each iteration once, as the resumed run computes it.
    """

    def __init__(self, folder: Path, start: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOG
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines() if _iteration_of(line) is not None and _iteration_of(line) < start]
            self.path.write_text("".join(f"{line}\n" for line in kept))
        self._file = open(self.path, "a", encoding="utf-8")  # closed by close()
        self._board = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            pass
        else:
            self._board = SummaryWriter(str(folder / "tensorboard"), purge_step=start)

    def add(self, iteration: int, loss: float, terms: dict[str, float], lr: float, seconds: float) -> None:
        self._file.write(json.dumps({"iteration": iteration, "loss": loss, **{f"loss/{k}": v for k, v in terms.items()},
                                     "lr": lr, "seconds": round(seconds, 6)}) + "\n")
        self._file.flush()
        if self._board is not None:
            self._board.add_scalar("loss", loss, iteration)
            for key, value in terms.items():
                self._board.add_scalar(f"loss/{key}", value, iteration)
            self._board.add_scalar("lr", lr, iteration)
            self._board.add_scalar("seconds_per_iteration", seconds, iteration)

    def close(self) -> None:
        self._file.close()
        if self._board is not None:
            self._board.close()


def _iteration_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["iteration"])
    except (ValueError, KeyError, TypeError):
        return None  # a line cut by a kill


def read_training_log(folder: str | Path) -> list[dict]:
    """The records of a run's `train_log.jsonl` (empty when there is none)."""
    path = Path(folder) / LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if _iteration_of(line) is not None]


def make_optimizer(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimizer: the papers' momentum SGD, or AdamW (the miniature protocol's, which learns
    from scratch in a few hundred iterations where SGD does not)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.base_lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        fused = {"fused": True} if config.fused_optimizer else {}
        return torch.optim.AdamW(parameters, lr=config.base_lr, weight_decay=config.weight_decay, **fused)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def train(
    model: nn.Module,
    training_set: torch.utils.data.Dataset,
    collate: Callable,
    config: TrainConfig,
    checkpoint_dir: Path,
    device: str = "cpu",
    workers: int = 0,
    progress: bool = False,
    description: str = "training",
) -> TrainingOutcome:
    """Train `model` (which defines `loss(inputs, targets) -> dict`) for `config.iterations`.

    Resumes from `checkpoint_dir/last.pt`; returns at once when `checkpoint_dir/final.pt` exists. The
    trained weights are in `model` on return and in `final.pt`.

    Distributed (torch.distributed initialised with W > 1 ranks): `config.batch_size` is the total batch
    B of one iteration, the batch the recipe's learning rate is stated for; each rank takes B / W samples
    of it (an error when W does not divide B) and DistributedDataParallel averages the gradients, so an
    iteration sees the same B samples as one process would. The learning rate follows the linear scaling
    rule lr = lr_recipe * B / B_recipe (Goyal et al. 2017), which `Budget.apply` already applied when a
    budget changed B; the number of processes does not change B and therefore not the learning rate.
    On CUDA, BatchNorm layers become SyncBatchNorm so that their statistics cover the total batch as in
    the papers' multi-GPU training. Only rank 0 writes checkpoints; every rank resumes from them (the
    checkpoint folder must be on a filesystem all ranks share).
    """
    checkpoint_dir = Path(checkpoint_dir)
    torch_device = torch.device(device)
    model.to(torch_device)
    world, rank = distributed.world_size(), distributed.rank()
    per_rank = per_rank_batch(config.batch_size, world)
    finished = (checkpoint_dir / FINAL).exists()
    distributed.check_same_on_all_ranks(finished, f"whether {checkpoint_dir / FINAL} exists")
    if finished:
        load_weights(model, checkpoint_dir / FINAL)
        model.eval()  # as after training
        return TrainingOutcome(0, config.iterations, None)
    if config.freeze_backbone and hasattr(model, "backbone"):
        for parameter in model.backbone.parameters():
            parameter.requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(parameters, config)
    use_amp = config.amp and torch_device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start = 0
    if (checkpoint_dir / LAST).exists():
        state = load_checkpoint(checkpoint_dir / LAST, torch_device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start = int(state["iteration"])
        log.info("%s: resuming at iteration %d of %d", description, start, config.iterations)
    distributed.check_same_on_all_ranks(start, f"the iteration to resume from in {checkpoint_dir}")
    step = model.loss  # the loss of a batch; under DDP through its forward, which synchronises gradients
    if world > 1:

        if torch_device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # find_unused_parameters: some models leave parameters out of the loss (e.g. heads of another task)
        gpu = None
        if torch_device.type == "cuda":
            gpu = [torch.cuda.current_device() if torch_device.index is None else torch_device.index]
        step = DistributedDataParallel(_LossForward(model), device_ids=gpu, find_unused_parameters=True)
        log.info("%s: rank %d of %d, %d of the %d images per iteration", description, rank, world, per_rank, config.batch_size)
    model.train()
    batches = torch.utils.data.DataLoader(
        training_set,
        batch_size=per_rank,
        sampler=RankSampler(start, config.iterations, config.batch_size, rank, per_rank),
        collate_fn=collate,
        num_workers=workers,
        pin_memory=torch_device.type == "cuda",
    )
    if use_amp:
        autocast = torch.autocast("cuda", dtype=torch.float16)
    elif config.cpu_bf16 and torch_device.type == "cpu":
        autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        autocast = nullcontext()
    last_loss = None
    training_log = TrainingLog(checkpoint_dir, start) if rank == 0 else None
    tick = time.perf_counter()
    bar = tqdm(total=config.iterations, initial=start, desc=description, unit="it", disable=not progress, leave=False)
    for iteration, (inputs, targets) in enumerate(batches, start=start):
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(iteration)
        with autocast:
            losses = step(to_device(inputs, torch_device), to_device(targets, torch_device))
            loss = sum(losses.values())
        mean_loss = distributed.all_reduce_mean(loss.detach())  # every rank takes the same decision below
        if not torch.isfinite(mean_loss):
            raise RuntimeError(f"{description}: loss became {float(mean_loss)} at iteration {iteration}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        last_loss = mean_loss.item()
        if training_log is not None:
            now = time.perf_counter()
            training_log.add(iteration, last_loss, {k: float(v.detach()) for k, v in losses.items()}, config.lr_at(iteration), now - tick)
            tick = now
        bar.update()
        bar.set_postfix(loss=f"{last_loss:.3f}")
        done = iteration + 1
        if done < config.iterations and done % config.checkpoint_every == 0 and rank == 0:
            save_atomic(
                {"iteration": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scaler": scaler.state_dict(), "config": config.to_json()},
                checkpoint_dir / LAST,
            )
    bar.close()
    if training_log is not None:
        training_log.close()
    if rank == 0:
        save_atomic({"iteration": config.iterations, "model": model.state_dict(), "config": config.to_json()}, checkpoint_dir / FINAL)
        (checkpoint_dir / LAST).unlink(missing_ok=True)
    distributed.barrier()  # final.pt exists for every rank once train returns
    model.eval()
    return TrainingOutcome(config.iterations - start, start, last_loss if last_loss is None or math.isfinite(last_loss) else None)
