"""Argument types shared by the sub-commands (argparse turns their errors into exit status 2).

Every option is checked here, when the arguments are parsed, so that a bad value fails in one line before
any work starts: devices, seeds, budgets, and output files and folders that cannot be written.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def image_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W), both positive."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 1024x2048, got {text!r}") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def band_widths(text: str) -> tuple[int, ...]:
    """'3,5,8,12' -> (3, 5, 8, 12); an empty string means no bands."""
    if not text.strip():
        return ()
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated pixel widths such as 3,5,8,12, got {text!r}") from None
    if any(width < 0 for width in widths):
        raise argparse.ArgumentTypeError(f"band widths must be non-negative, got {text!r}")
    return tuple(sorted(set(widths)))


def seed(text: str) -> int:
    """A random seed: an integer in [0, 2**32) (numpy's generators refuse negative seeds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a seed, an integer from 0 to 2**32-1, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed, an integer from 0 to 2**32-1, got {text!r}")
    return value


def seed_list(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]."""
    try:
        seeds = [seed(part) for part in text.split(",") if part.strip()]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated seeds (integers from 0 to 2**32-1) such as 0,1,2, got {text!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return sorted(set(seeds))


def device_name(text: str) -> str:
    """'cpu', 'cuda' or 'cuda:N'; whether CUDA is present is checked by the command (it needs torch)."""
    if not _DEVICE.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return text.strip()


def budget_name(text: str) -> str:
    """One of the budgets of bench/recipes.py (smoke, miniature, short, paper)."""
    from alignbench.bench.recipes import BUDGETS

    if text not in BUDGETS:
        raise argparse.ArgumentTypeError(f"unknown budget {text!r}; choose from {', '.join(BUDGETS)}")
    return text


def _writable_folder_problem(folder: Path) -> str | None:
    """Why files cannot be created in `folder` (created first if missing), or None when they can."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"folder {existing} cannot be written"
    return None


def output_file(text: str) -> str:
    """A file to write (--json, --out FILE): its folder must exist and be writable, and it must not be a folder.

    Checked when the arguments are parsed so that a run never finds out after hours of work that it cannot
    save its result.
    """
    path = Path(text)
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, expected a file name")
    folder = path.parent
    if not folder.exists():
        raise argparse.ArgumentTypeError(f"{text}: folder {folder} does not exist")
    problem = _writable_folder_problem(folder)
    if problem:
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text}: file is read-only")
    return text


def store_file(text: str) -> str:
    """A results database to open or create: not a folder, and its folder (created when missing) writable."""
    path = Path(text)
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, expected a database file name")
    problem = _writable_folder_problem(path.parent)
    if problem:
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return text


def output_folder(text: str) -> str:
    """A folder to write into (created when missing): it, or its nearest existing parent, must be a writable folder."""
    if not text:
        raise argparse.ArgumentTypeError("expected a folder name")
    problem = _writable_folder_problem(Path(text))
    if problem:
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return text
