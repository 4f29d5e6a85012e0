"""torch.distributed helpers: join the process group torchrun (or a Slurm job) describes, shard and merge.

One process per GPU (or several CPU processes with gloo) runs the same command. Evaluation gives image i
to rank i % world, so every image is evaluated exactly once; the ranks' metric accumulators are gathered
and merged with their own exact `merge` (integer confusion matrices and counts add, sums of floats use
math.fsum), so the scores are bit-for-bit those of one process. Detections are gathered to rank 0 in
dataset order, evaluated there, and the scores broadcast. Only rank 0 writes results, checkpoints and
reports.

Backend: gloo for CPU tensors and, when CUDA is used, NCCL for CUDA tensors ("cpu:gloo,cuda:nccl"), so
that the CPU-side metric state and the GPU-side DDP gradients each use the right transport.

Without an initialised process group (or with a world of one) every helper is the identity: single-process
behaviour is unchanged. This module imports torch only when a process group can exist (torch.distributed
already imported), so that the torch-free evaluation commands stay torch-free.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from alignbench.bench.errors import UserError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

T = TypeVar("T")


# --- the process group ---------------------------------------------------------------------------------


def launched() -> bool:
    """True when the environment describes more than one process (torchrun's RANK / WORLD_SIZE)."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str | None = None) -> bool:
    """Join the process group described by RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (torchrun sets
    them; Slurm jobs get them from `export_submitit_env`). Returns whether this process is distributed.

    `device` is the command's --device: CUDA (the default when available) adds NCCL for CUDA tensors and
    selects GPU LOCAL_RANK; "cpu" uses gloo only. A world of one initialises nothing.
    """
    if is_distributed():
        return True
    if not launched():
        return False
    # here: torch loads only when a process group can exist (the eval commands stay torch-free)
    import torch
    import torch.distributed as dist

    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise UserError(f"distributed launch: environment variable {name} is not set (start with torchrun)")
    use_cuda = torch.cuda.is_available() and not (device or "").startswith("cpu")
    if use_cuda:
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
    backend = "cpu:gloo,cuda:nccl" if use_cuda else "gloo"
    dist.init_process_group(backend=backend)
    log.info("rank %d of %d joined the process group (%s)", rank(), world_size(), backend)
    return True


def _dist():
    """torch.distributed when this process has imported it (no process group can exist otherwise)."""
    return sys.modules.get("torch.distributed")


def shutdown() -> None:
    """Leave the process group (if this process joined one)."""
    dist = _dist()
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """A process group with more than one rank is initialised."""
    dist = _dist()
    return dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return _dist().get_rank() if is_distributed() else 0


def world_size() -> int:
    return _dist().get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's index on its node (torchrun's LOCAL_RANK; 0 when not launched)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0: the one process that writes results, checkpoints and reports."""
    return rank() == 0


def rank_device(device: str) -> str:
    """The device of this rank: a bare "cuda" becomes cuda:<LOCAL_RANK modulo the visible GPUs>.

    Under a distributed launch an explicit "cuda:N" is refused: every rank would use the same GPU.
    """
    if not is_distributed() or not device.startswith("cuda"):
        return device
    import torch  # here: under a process group only (see the module docstring)

    if device != "cuda":
        raise UserError(f"--device {device}: under torchrun each rank uses its own GPU; pass --device cuda")
    return f"cuda:{local_rank() % torch.cuda.device_count()}"


def barrier() -> None:
    if is_distributed():
        _dist().barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. generating or exporting shared data), the others after it."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


# --- sharding and merging ------------------------------------------------------------------------------


def shard_indices(n: int) -> range:
    """The indices of `n` items this rank evaluates: i with i % world == rank (all of them alone)."""
    return range(rank(), n, world_size())


def shard(items: Sequence[T]) -> list[T]:
    """This rank's items: items[rank::world]."""
    return [items[i] for i in shard_indices(len(items))]


def merge_accumulators(accumulator: T) -> T:
    """Every rank's accumulator merged in rank order, returned on every rank.

    The accumulators (metrics.semantic.SemanticAccumulator, metrics.panoptic.PanopticAccumulator) hold
    plain numpy state and merge exactly, so the result equals one process that saw every image.
    """
    if not is_distributed():
        return accumulator
    gathered: list[Any] = [None] * world_size()
    _dist().all_gather_object(gathered, accumulator)
    merged = gathered[0]
    for other in gathered[1:]:
        merged.merge(other)
    return merged


def gather_to_main(value: T) -> list[T] | None:
    """Every rank's `value`, in rank order, on rank 0; None on the other ranks."""
    if not is_distributed():
        return [value]
    gathered: list[Any] | None = [None] * world_size() if is_main() else None
    _dist().gather_object(value, gathered, dst=0)
    return gathered


def broadcast_from_main(value: T) -> T:
    """Rank 0's `value` on every rank (the others' arguments are ignored)."""
    if not is_distributed():
        return value
    box = [value if is_main() else None]
    _dist().broadcast_object_list(box, src=0)
    return box[0]


def check_same_on_all_ranks(value: Any, what: str) -> None:
    """Raise (on every rank) when ranks disagree about `value`, e.g. which checkpoint they resume from."""
    if not is_distributed():
        return
    gathered: list[Any] = [None] * world_size()
    _dist().all_gather_object(gathered, value)
    if any(other != gathered[0] for other in gathered[1:]):
        raise RuntimeError(f"ranks disagree about {what}: {gathered} (is the folder on a filesystem all ranks share?)")


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a (detached) tensor over the ranks; the tensor itself where not distributed."""
    if not is_distributed():
        return value
    value = value.detach().clone()
    _dist().all_reduce(value)
    return value / world_size()


# --- Slurm (submitit) ----------------------------------------------------------------------------------


def export_submitit_env() -> bool:
    """Inside a submitit job with several tasks: set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
    MASTER_PORT from the job's environment so that `init_from_env` works as under torchrun. Returns
    whether the job has more than one task."""
    # here: submitit is an optional dependency (the `slurm` extra), needed only inside a Slurm job
    import submitit
    import submitit.helpers

    environment = submitit.JobEnvironment()
    if environment.num_tasks <= 1:
        return False
    # CUDA_VISIBLE_DEVICES is left alone: rank_device picks LOCAL_RANK modulo the GPUs the task sees.
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return True
