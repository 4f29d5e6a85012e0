"""Set-up contract: the README's two commands, CI running the test command, light start-up, layering."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from helpers import REPO_ROOT


def _readme_commands() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    head = readme.split("\n---", 1)[0]  # the set-up section before the first rule
    return re.findall(r"```bash\n(.+?)\n```", head, flags=re.S)


def test_readme_opens_with_exactly_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    main_job, tests = commands
    assert "pip install ." in main_job and main_job.rstrip().endswith("alignbench run-all")
    assert "tox" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def test_pyproject_declares_the_console_script_and_pinned_torch_pair():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "alignbench"
    assert project["scripts"]["alignbench"] == "bench.cli:main"
    dependencies = project["dependencies"]
    assert any(d.startswith("torch==") for d in dependencies)
    assert any(d.startswith("torchvision==") for d in dependencies)
    assert "cityscapesscripts==2.3.0" in dependencies


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, cwd=REPO_ROOT, check=True,
    ).stdout.split()
    return set(out)


def test_help_works_without_heavy_imports():
    modules = _modules_after("from bench.cli import build_parser; build_parser()")
    assert not {"torch", "matplotlib", "pandas", "cv2"} & modules


def test_semantic_evaluation_imports_no_torch_or_matplotlib(predictions):
    code = (
        "from bench.cli import main\n"
        f"assert main(['eval', 'semantic', '--gt', {str(predictions.gt_root)!r}, '--pred', {str(predictions.pred_dir)!r}, '--quiet']) == 0"
    )
    modules = _modules_after(code)
    assert not {"torch", "matplotlib", "pandas"} & modules
    assert "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling" not in modules


def test_metrics_and_models_do_not_import_bench():
    modules = _modules_after("import metrics.semantic, metrics.boundary, models")
    assert not any(name == "bench" or name.startswith("bench.") for name in modules)


def test_python_m_bench_matches_the_console_script(cli):
    result = cli("--help")
    assert result.returncode == 0 and "run-all" in result.stdout and "eval" in result.stdout
