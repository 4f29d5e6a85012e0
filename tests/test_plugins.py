"""Plugins: loaded by --plugin (file or module, on any command), ALIGNBENCH_PLUGINS and entry points; a failing
plugin is one line naming it."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
from alignbench_test_helpers import run_cli

# A plugin that registers a whole model through the public registry API.
MODEL_PLUGIN = '''
from alignbench import models
from alignbench.models.registry import ModelInfo

def build(num_classes=19):
    import torch
    return torch.nn.Conv2d(3, num_classes, 1)

models.register_model(ModelInfo(name="{name}", task="semantic", paper="mine", table="-", row="{name}",
                                paper_params_m=None, input_size=(64, 128), description="a plugin's model"), build)
'''


def _write_plugin(folder, name: str, module: str | None = None):
    path = folder / f"{module or name}.py"
    path.write_text(MODEL_PLUGIN.format(name=name))
    return path


def _listed(result) -> set[str]:
    assert result.returncode == 0, result.stderr
    return {row["name"] for row in json.loads(result.stdout)}


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ALIGNBENCH_PLUGINS"}
    return {**env, **extra}


def test_plugin_file_before_or_after_the_command_and_repeated(tmp_path):
    first, second = _write_plugin(tmp_path, "plugin_model_a"), _write_plugin(tmp_path, "plugin_model_b")
    names = _listed(run_cli("--plugin", first, "models", "--json", "--plugin", second, env=_env()))
    assert {"plugin_model_a", "plugin_model_b", "pointrend_fapn_r50"} <= names
    assert "plugin_model_a" not in _listed(run_cli("models", "--json", env=_env()))


def test_plugin_as_a_module_name_and_from_the_environment(tmp_path):
    _write_plugin(tmp_path, "plugin_model_c", module="my_necks_module")
    env = _env(PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    assert "plugin_model_c" in _listed(run_cli("models", "--json", "--plugin", "my_necks_module", env=env))
    path = _write_plugin(tmp_path, "plugin_model_d")
    env = _env(ALIGNBENCH_PLUGINS=f"{path}{os.pathsep}my_necks_module", PYTHONPATH=env["PYTHONPATH"])
    assert {"plugin_model_c", "plugin_model_d"} <= _listed(run_cli("models", "--json", env=env))


def test_plugin_from_an_installed_entry_point(tmp_path):
    _write_plugin(tmp_path, "plugin_model_e", module="entry_point_necks")
    info = tmp_path / "entry_point_necks-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: entry-point-necks\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[alignbench.plugins]\nmine = entry_point_necks\n")
    env = _env(PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    assert "plugin_model_e" in _listed(run_cli("models", "--json", env=env))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import not_a_module_anywhere\n", "ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
        ("raise RuntimeError('half-written\\nneck')\n", "RuntimeError: half-written neck"),
        ("def broken(:\n", "SyntaxError"),
    ],
)
def test_a_failing_plugin_is_one_line_naming_it(tmp_path, source, expected):
    path = tmp_path / "bad_plugin.py"
    path.write_text(textwrap.dedent(source))
    result = run_cli("models", "--plugin", path, env=_env())
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"plugin {path} failed to import" in result.stderr and expected in result.stderr


def test_missing_plugin_file_and_module(tmp_path):
    result = run_cli("models", "--plugin", tmp_path / "nope.py", env=_env())
    assert result.returncode == 2 and f"plugin {tmp_path / 'nope.py'}: file not found" in result.stderr
    result = run_cli("--plugin", "no_such_plugin_module", "models", env=_env())
    assert result.returncode == 2 and "plugin no_such_plugin_module failed to import: ModuleNotFoundError" in result.stderr


def test_loading_is_idempotent_and_exported_to_child_processes(tmp_path, monkeypatch):
    from alignbench.bench import plugins

    monkeypatch.delenv(plugins.ENVIRONMENT_VARIABLE, raising=False)
    path = tmp_path / "counting_plugin.py"
    path.write_text("import builtins\nbuiltins.alignbench_plugin_loads = getattr(builtins, 'alignbench_plugin_loads', 0) + 1\n")
    import builtins

    try:
        first = plugins.load_plugins([str(path)], entry_points=False)
        second = plugins.load_plugins([str(path)], entry_points=False)
        assert first == second and len(first) == 1
        assert builtins.alignbench_plugin_loads == 1
        assert os.environ[plugins.ENVIRONMENT_VARIABLE] == str(path.resolve())
    finally:
        if hasattr(builtins, "alignbench_plugin_loads"):
            del builtins.alignbench_plugin_loads


CLASS_PLUGIN = '''
import torch
from alignbench import models
from alignbench.models.registry import ModelInfo

class TinyModel(torch.nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, num_classes, 1)

    def forward(self, x):
        return self.conv(x) * SCALE

def build(num_classes=19):
    return TinyModel(num_classes)

models.register_model(ModelInfo(name="plugin_fingerprinted", task="semantic", paper="mine", table="-", row="-",
                                paper_params_m=None, input_size=(64, 128), description="a plugin's model"), build)
'''


def test_a_plugin_models_code_is_part_of_its_fingerprint(tmp_path):
    """Editing a plugin's code (shapes unchanged) gives a new fingerprint, so no stale result is reused."""
    import subprocess
    import sys

    path = tmp_path / "fingerprinted_plugin.py"
    code = ("from alignbench.bench.plugins import load_plugins\nfrom alignbench.bench.provenance import model_fingerprint\n"
            f"load_plugins([{str(path)!r}], environment=False, entry_points=False)\nprint(model_fingerprint('plugin_fingerprinted'))")

    def fingerprint() -> str:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env()).stdout.strip()

    path.write_text(CLASS_PLUGIN.replace("SCALE", "1.0"))
    first, again = fingerprint(), fingerprint()
    path.write_text(CLASS_PLUGIN.replace("SCALE", "2.0"))
    assert first == again and len(first) == 16 and fingerprint() != first
