"""What made a number: the code version, a fingerprint of the model definition, the weights files, git.

Every cache key of the harness (results-store entries, training checkpoints, the params / GMACs cache, the
notebooks' trained models) includes `code_identity(model, options)`: the package version and the model's
definition fingerprint. The fingerprint covers

- the builder options the model is built with,
- the names, shapes and dtypes of its state dict (built on the meta device: no memory, no initialisation),
- the source of every alignbench or plugin module that defines one of its classes (base classes included), whose code
  runs while the builder builds it (the family's builder, shared layers), or that registers it (a model
  module whose source names it as a string literal: where a `functools.partial` fixes its options),

so editing a model's code, or a change that keeps every shape, gives a new key and never reuses a stale
result or checkpoint. Weights files (checkpoints, backbone weights) enter the keys by their sha256.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import alignbench
from alignbench.bench.plugins import loaded_packages


def digest(payload: Any, length: int = 16) -> str:
    """A short sha256 of a JSON-able payload (keys sorted)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:length]


def code_version() -> str:
    return alignbench.__version__


@functools.cache
def git_commit() -> str | None:
    """The commit of the source tree alignbench runs from, when it is a git checkout (asked once per process)."""
    try:
        output = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if output.returncode != 0:
        return None
    return output.stdout.strip() or None


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file (cached per path, size and modification time)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _is_own(module_name: str) -> bool:
    """alignbench's modules and those of the loaded plugins (a researcher's neck is part of the definition too)."""
    top = module_name.split(".")[0]
    return module_name.startswith("alignbench.") or top in loaded_packages()


def _source_files() -> dict[str, str]:
    """Source file -> module name, for the loaded modules of the alignbench package and of the plugins."""
    files = {}
    for name, module in list(sys.modules.items()):
        if _is_own(name) and getattr(module, "__file__", None):
            files[str(Path(module.__file__).resolve())] = name
    return files


def _build_and_trace(name: str, options: dict):
    """Build `name` on the meta device, recording the alignbench source files whose code ran."""
    # here: the model zoo (and torch) load only when a model is fingerprinted; bench.storing and bench.planning import
    # this module without building one
    import torch

    from alignbench import models

    models.get_info(name)  # loads the zoo before the trace, so its import is not mistaken for the build
    known = _source_files()
    ran: set[str] = set()

    def profile(frame, event, arg) -> None:
        if event == "call":
            filename = frame.f_code.co_filename
            if filename in known:
                ran.add(known[filename])

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        with torch.device("meta"):
            model = models.build(name, **options)
    finally:
        sys.setprofile(previous)
    return model, ran


def _registering_modules(name: str) -> set[str]:
    """The loaded alignbench.models modules whose source names `name` as a string literal."""
    quoted = (f'"{name}"', f"'{name}'")
    found = set()
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("alignbench.models") and getattr(module, "__file__", None):
            text = _read_source(module.__file__)
            if any(literal in text for literal in quoted):
                found.add(module_name)
    return found


@functools.cache
def _read_source(path: str) -> str:
    return Path(path).read_text(encoding="utf-8", errors="replace")


@functools.cache
def _fingerprint(name: str, options_json: str) -> str:
    options = json.loads(options_json)
    model, ran = _build_and_trace(name, options)
    classes = {cls for module in model.modules() for cls in type(module).__mro__}
    defining = {cls.__module__ for cls in classes if _is_own(cls.__module__)}
    modules = sorted((defining | ran | _registering_modules(name)) - {"alignbench.bench.provenance"})
    sources = {}
    for module_name in modules:
        source_file = inspect.getsourcefile(sys.modules[module_name])
        sources[module_name] = file_sha256(source_file)[:16] if source_file else None
    shapes = [[key, list(value.shape), str(value.dtype)] for key, value in model.state_dict().items()]
    return digest({"model": name, "options": options, "state_dict": shapes, "sources": sources})


def model_fingerprint(name: str, options: dict | None = None) -> str:
    """A digest of the definition of registered model `name` built with builder `options` (see the module
    docstring); computed once per process and (name, options)."""
    return _fingerprint(name, json.dumps(options or {}, sort_keys=True, default=str))


def code_identity(name: str, options: dict | None = None) -> dict[str, str]:
    """{"version": the package version, "model": the model definition's fingerprint}."""
    return {"version": code_version(), "model": model_fingerprint(name, options)}
