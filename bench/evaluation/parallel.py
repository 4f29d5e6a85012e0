"""Accumulate per-image metric state in this process or in a pool of worker processes.

The semantic and panoptic evaluators share this: items (image pairs) are accumulated into a mergeable
accumulator one by one here, or in small chunks by `workers` processes whose accumulators are merged.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import cv2


def _accumulate_chunk(new_accumulator: Callable[[], Any], add: Callable[[Any, Any], None], chunk: Sequence) -> Any:
    accumulator = new_accumulator()
    for item in chunk:
        add(accumulator, item)
    return accumulator


def accumulate(
    items: Sequence,
    new_accumulator: Callable[[], Any],
    add: Callable[[Any, Any], None],
    workers: int = 1,
    progress: bool = False,
) -> Any:
    """`add(accumulator, item)` for every item into one `new_accumulator()`, merged with `.merge` across
    `workers` processes when there are several (both callables must then be picklable: module-level
    functions or partials of them)."""
    bar = _progress_bar(len(items), progress)
    accumulator = new_accumulator()
    if workers == 1 or len(items) < 2:
        for item in items:
            add(accumulator, item)
            bar.update()
        bar.close()
        return accumulator
    # Small chunks keep the progress bar moving and leave little imbalance at the end (at most a few
    # images); each chunk costs one pickled accumulator (tens of kB) on the way back.
    chunk_size = max(1, min(4, len(items) // (workers * 8)))
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    evaluate_chunk = partial(_accumulate_chunk, new_accumulator, add)
    from concurrent.futures import ProcessPoolExecutor  # here: a one-process run need not import it

    with ProcessPoolExecutor(max_workers=workers, mp_context=_process_context(), initializer=_init_worker) as pool:
        futures = [pool.submit(evaluate_chunk, chunk) for chunk in chunks]
        try:
            for future, chunk in zip(futures, chunks):
                accumulator.merge(future.result())
                bar.update(len(chunk))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        finally:
            bar.close()
    return accumulator


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, progress: bool):
    """A tqdm bar, imported only when shown (importing tqdm is a tenth of the command's start-up)."""
    if not progress:
        return _NoBar()
    from tqdm import tqdm  # here: only when a bar is shown (importing tqdm is a tenth of `eval`'s start-up)

    return tqdm(total=total, desc="evaluating", unit="img")


def keep_freed_memory_for_reuse() -> bool:
    """Ask glibc's malloc to keep freed blocks of up to 32 MB for reuse instead of handing them back to the
    kernel; True when it took. Called by the `eval` commands, not by the library functions, as it changes the
    whole process.

    Why: every image's decoded PNGs and masks are blocks of a few MB. By default glibc maps such blocks
    afresh and unmaps them when freed, so a new process page-faults them in again for every image: 0.6 s of
    system time on 200 images of 512x1024, a sixth of the command. A long-lived process gets there by itself
    (glibc raises its threshold as it sees blocks freed); a command that reads each image once does not have
    the time. No library sets this, hence ctypes. A no-op (False) where the C library is not glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mmap_threshold, trim_threshold = -3, -1  # glibc's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD (malloc.h)
    largest_kept = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems
    return bool(mallopt(mmap_threshold, largest_kept)) and bool(mallopt(trim_threshold, 2 * largest_kept))


def _init_worker() -> None:
    """One OpenCV thread per worker process: the processes already use the cores."""
    cv2.setNumThreads(1)


def _process_context():
    """fork where available (no re-import cost per worker); spawn elsewhere."""
    import multiprocessing  # here: as ProcessPoolExecutor, only a run with workers needs it (5 ms of start-up)

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")
