"""Where generated data lives, and generating it only when it is not already there.

A dataset is always generated into a staging folder of its own (one per process: host name, process id and
a random suffix in its name) next to its final place, then renamed into place. A killed or failed
generation (a full disk) therefore never leaves a half-written dataset under the final name, and two
processes generating the same dataset at once never write into the same folder: the first rename wins,
the second process finds the complete dataset in place and discards its own copy. The swap itself runs
under an exclusive file lock (fcntl), so a reader never sees the final folder replaced under it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from alignbench.bench.data.synthetic import SynthSpec, read_synth_spec, write_dataset
from alignbench.bench.errors import UserError
from alignbench.bench.io import STAGING_SUFFIX, current_umask, exclusive_lock, host_and_pid, remove_abandoned_staging

log = logging.getLogger(__name__)

_GENERATED = {"leftImg8bit", "gtFine", "synth.json"}  # what write_dataset creates


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
    with `overwrite`, and only when the folder holds nothing else.
    """
    root = Path(root)
    existing = read_synth_spec(root)
    if existing == spec.to_json():
        log.info("%s already holds this synthetic dataset", root)
        return root

    def may_replace(found: dict | None) -> bool:
        if found is None:
            return not root.exists() or (root.is_dir() and not any(root.iterdir()))
        others = sorted({entry.name for entry in root.iterdir()} - _GENERATED)
        if overwrite and others:
            raise UserError(f"{root}: holds other files besides a synthetic dataset ({', '.join(others)}); not overwritten")
        return overwrite

    if existing is not None and not overwrite:
        raise UserError(f"{root}: holds a different synthetic dataset ({existing}); use --overwrite or another folder")
    if not may_replace(existing):
        raise UserError(f"{root}: exists and is not an empty folder; choose a new or empty folder")
    return _generate_into_place(root, spec, progress, may_replace)


def ensure_synthetic(spec: SynthSpec, progress: bool = True) -> Path:
    """The cached synthetic dataset for `spec`, generated on first use (safe with several processes at once)."""
    root = synthetic_root(spec)
    if read_synth_spec(root) == spec.to_json():
        return root
    return _generate_into_place(root, spec, progress, replace=lambda found: True)


def _generate_into_place(root: Path, spec: SynthSpec, progress: bool, replace) -> Path:
    """Write `spec` into a staging folder of this process, then rename it to `root`.

    `replace(found_spec)` says whether what is at `root` when the new tree is ready (found_spec: its
    synth.json, None when incomplete, missing or empty) may be replaced.
    """
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned_staging(root, suffixes=(STAGING_SUFFIX, ".old"))
        staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.{host_and_pid()}.", suffix=STAGING_SUFFIX))
    except OSError as error:
        raise UserError(f"{error.filename or root.parent}: cannot write ({error.strerror or error})") from None
    try:
        try:
            write_dataset(staging, spec, progress=progress)
        except UserError as error:
            raise UserError(f"{root}: not generated, nothing left behind: {error}") from None
        staging.chmod(0o777 & ~current_umask())  # mkdtemp made it private; the dataset gets the usual permissions
        with exclusive_lock(root.parent):
            found = read_synth_spec(root)
            if found == spec.to_json():
                log.info("%s: generated meanwhile by another process; discarding this copy", root)
            elif not replace(found):
                raise UserError(f"{root}: other files appeared there meanwhile; left untouched")
            else:
                _move_into_place(staging, root)
    except OSError as error:
        raise UserError(f"{error.filename or root}: cannot write ({error.strerror or error})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # a no-op after the rename
    return root


def _move_into_place(staging: Path, root: Path) -> None:
    """Rename `staging` to `root`; an existing `root` (incomplete, empty, or to overwrite) is moved away first."""
    if root.is_symlink() or root.is_file():
        raise UserError(f"{root}: exists and is not a folder; left untouched")
    old = None
    if root.exists():
        old = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.{host_and_pid()}.", suffix=".old"))
        os.replace(root, old / root.name)
    os.rename(staging, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
