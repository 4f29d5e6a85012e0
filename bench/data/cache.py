"""Where generated data lives, and generating it only when it is not already there."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from alignbench.bench.data.synthetic import SynthSpec, read_synth_spec, write_dataset
from alignbench.bench.errors import UserError

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """$ALIGNBENCH_CACHE, else $XDG_CACHE_HOME/alignbench, else ~/.cache/alignbench."""
    if os.environ.get("ALIGNBENCH_CACHE"):
        return Path(os.environ["ALIGNBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alignbench"


def synthetic_root(spec: SynthSpec) -> Path:
    """The cache folder for one synthetic dataset, named by a hash of its spec."""
    digest = hashlib.sha1(json.dumps(spec.to_json(), sort_keys=True).encode()).hexdigest()[:10]
    return cache_dir() / "synthetic" / f"cityscapes-{spec.size[0]}x{spec.size[1]}-{digest}"


def prepare_synthetic_folder(root: Path, spec: SynthSpec, overwrite: bool = False, progress: bool = True) -> Path:
    """Generate `spec` into `root` unless it already holds exactly that dataset.

    A folder holding other files is never written into; a different synthetic dataset is replaced only
    with `overwrite`.
    """
    existing = read_synth_spec(root)
    if existing == spec.to_json():
        log.info("%s already holds this synthetic dataset", root)
        return root
    if existing is not None:
        if not overwrite:
            raise UserError(f"{root}: holds a different synthetic dataset ({existing}); use --overwrite or another folder")
        for part in ("leftImg8bit", "gtFine"):
            shutil.rmtree(root / part, ignore_errors=True)
        (root / "synth.json").unlink(missing_ok=True)
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UserError(f"{root}: exists and is not an empty folder; choose a new or empty folder")
    return write_dataset(root, spec, progress=progress)


def ensure_synthetic(spec: SynthSpec, progress: bool = True) -> Path:
    """The cached synthetic dataset for `spec`, generated on first use."""
    root = synthetic_root(spec)
    if read_synth_spec(root) == spec.to_json():
        return root
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    write_dataset(staging, spec, progress=progress)
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)  # a killed generation never leaves a half-written dataset under the final name
    return root
