"""Argument types shared by the sub-commands (argparse turns their errors into exit status 2)."""

from __future__ import annotations

import argparse


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


def seed_list(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,2, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return sorted(set(seeds))
