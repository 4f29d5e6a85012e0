"""Plugins: a researcher's own necks (or backbones, heads, whole models) brought in from outside the package.

A plugin is a Python file or an importable module that registers what it brings when imported, e.g. with
`@alignbench.models.register_neck("myneck")`. Three ways to load one, all equivalent:

* `--plugin PATH_OR_MODULE` on any command (repeatable);
* the environment variable `ALIGNBENCH_PLUGINS`, entries separated by the path separator (":" on Linux);
* the entry-point group `alignbench.plugins` of an installed distribution (pyproject:
  `[project.entry-points."alignbench.plugins"] myneck = "mypackage.necks"`).

Loading is idempotent. What `--plugin` loaded is added to `ALIGNBENCH_PLUGINS`, so worker processes started
afterwards (evaluation pools, Slurm jobs) load the same plugins. A plugin that fails to import is a
`UserError`: one line naming the plugin and the error.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from alignbench.bench.errors import UserError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "alignbench.plugins"
ENVIRONMENT_VARIABLE = "ALIGNBENCH_PLUGINS"

_loaded: dict[str, str] = {}  # key (resolved file path or module name) -> the module's name in sys.modules


def load_plugins(specs: Iterable[str] = (), environment: bool = True, entry_points: bool = True) -> list[str]:
    """Load the plugins named by `specs`, then those of `ALIGNBENCH_PLUGINS` and the entry points.

    Returns the module names of the plugins loaded (now or earlier), in loading order.
    """
    names = [_load_spec(spec) for spec in specs if spec]
    if environment:
        names += [_load_spec(spec) for spec in os.environ.get(ENVIRONMENT_VARIABLE, "").split(os.pathsep) if spec.strip()]
    if entry_points:
        from importlib import metadata  # here: importing it is a tenth of `eval`'s start-up, which needs no entry points

        names += [_load_entry_point(entry) for entry in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    _export_to_children(specs)
    return list(dict.fromkeys(names))


def loaded_packages() -> tuple[str, ...]:
    """Top-level package names of the plugins loaded so far (their code is part of a model's definition)."""
    return tuple(dict.fromkeys(name.split(".")[0] for name in _loaded.values()))


def _load_spec(spec: str) -> str:
    """Import a plugin file (a path ending in .py, or an existing file) or module (a dotted name)."""
    spec = spec.strip()
    path = Path(spec).expanduser()
    is_file = spec.endswith(".py") or path.is_file()
    key = str(path.resolve()) if is_file else spec
    if key in _loaded:
        return _loaded[key]
    if is_file:
        if not path.is_file():
            raise UserError(f"plugin {spec}: file not found")
        # a name that is the same in every process (a model's fingerprint includes its modules' names)
        name = f"alignbench_plugin_{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # picklable classes, and the same module on a second load
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:  # whatever the plugin raises: report it in one line
            del sys.modules[name]
            raise UserError(f"plugin {spec} failed to import: {_describe(error)}") from None
    else:
        name = spec
        try:
            importlib.import_module(spec)
        except Exception as error:  # ModuleNotFoundError included
            raise UserError(f"plugin {spec} failed to import: {_describe(error)}") from None
    _loaded[key] = name
    log.info("loaded plugin %s", spec)
    return name


def _load_entry_point(entry) -> str:
    """Load one importlib.metadata.EntryPoint."""
    key = f"entry point {entry.name} = {entry.value}"
    if key in _loaded:
        return _loaded[key]
    try:
        loaded = entry.load()
    except Exception as error:
        raise UserError(f"plugin {entry.name} ({ENTRY_POINT_GROUP} entry point {entry.value}) failed to import: {_describe(error)}") from None
    name = getattr(loaded, "__name__", entry.value)
    _loaded[key] = name
    return name


def _export_to_children(specs: Iterable[str]) -> None:
    """Add `specs` (as absolute paths for files) to ALIGNBENCH_PLUGINS for processes started later."""
    current = [s for s in os.environ.get(ENVIRONMENT_VARIABLE, "").split(os.pathsep) if s.strip()]
    for spec in specs:
        path = Path(spec).expanduser()
        entry = str(path.resolve()) if (spec.endswith(".py") or path.is_file()) else spec
        if entry not in current:
            current.append(entry)
    if current:
        os.environ[ENVIRONMENT_VARIABLE] = os.pathsep.join(current)


def _describe(error: BaseException) -> str:
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
