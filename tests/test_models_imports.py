"""Layering of alignbench.models and alignbench.metrics: no import of the harness, no import cycles.

Every module is imported first in a fresh interpreter (so that a cycle hidden by the import order of the
package __init__ surfaces), and the import statements of every module (module level and inside functions)
form an acyclic graph.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from alignbench_test_helpers import REPO_ROOT

PACKAGES = {"alignbench.models": REPO_ROOT / "models", "alignbench.metrics": REPO_ROOT / "metrics"}


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the two packages."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def _imported(name: str, path: Path) -> set[str]:
    """The alignbench modules that `name` imports anywhere in its source (implicit parent packages excluded)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets.add(base)
            # `from package import module` imports the submodule
            targets.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module":
            argument = node.args[0] if node.args else None
            if isinstance(argument, ast.JoinedStr):  # f"alignbench.models.{family}.zoo": every match counts
                prefix = argument.values[0].value if isinstance(argument.values[0], ast.Constant) else ""
                suffix = argument.values[-1].value if isinstance(argument.values[-1], ast.Constant) else ""
                targets.update(m for m in MODULES if m.startswith(prefix) and m.endswith(suffix))
            elif isinstance(argument, ast.Constant):
                targets.add(argument.value)
    return {target for target in targets if target.startswith("alignbench")}


def test_the_module_list_covers_the_families():
    assert {"alignbench.models.sfnet.model", "alignbench.models.fapn.neck", "alignbench.models.fpt.transformer",
            "alignbench.models.detection.rcnn", "alignbench.models.registry", "alignbench.metrics"} <= set(MODULES)


def test_no_module_of_models_or_metrics_imports_the_harness_in_its_source():
    offenders = {name: sorted(t for t in _imported(name, path) if t.startswith(("alignbench.bench", "alignbench.reports")))
                 for name, path in MODULES.items()}
    assert not {name: targets for name, targets in offenders.items() if targets}


def test_the_import_graph_has_no_cycle():
    graph = {name: {t for t in _imported(name, path) if t in MODULES and t != name} for name, path in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [node, target] if target in path else [node, target])
            elif target not in state:
                visit(target, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, cycles


def test_the_registry_imports_no_family_even_indirectly():
    from alignbench.models.families import FAMILIES

    reached, todo = set(), ["alignbench.models.registry"]
    while todo:
        name = todo.pop()
        for target in _imported(name, MODULES[name]):
            if target in MODULES and target not in reached:
                reached.add(target)
                todo.append(target)
    families = {f"alignbench.models.{family}" for family in FAMILIES}
    assert reached and not {name for name in reached if name.startswith(tuple(families))}, sorted(reached)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_module_imports_first_in_a_fresh_interpreter_without_the_harness(package):
    names = [name for name in MODULES if name.startswith(package)]
    # A fresh interpreter per module costs torch's start-up each time; instead one interpreter imports the
    # third-party libraries, then forks one child per module, which imports that alignbench module first.
    code = f"""
import importlib, os, sys
import numpy, torch, torchvision  # noqa: F401
failures = []
for name in {names!r}:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            bad = [m for m in sys.modules if m.startswith(("alignbench.bench", "alignbench.reports"))]
            message = f"imports the harness: {{bad}}" if bad else ""
        except BaseException as error:
            message = f"{{type(error).__name__}}: {{error}}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    message = os.read(read, 65536).decode()
    os.waitpid(child, 0)
    if message:
        failures.append(name + ": " + message)
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
