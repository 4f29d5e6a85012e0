"""Set-up contract: the README's two commands, CI running the test command, light start-up, layering."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from alignbench_test_helpers import REPO_ROOT


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
    assert project["scripts"]["alignbench"] == "alignbench.bench.cli:main"
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
    modules = _modules_after("from alignbench.bench.cli import build_parser; build_parser()")
    assert not {"torch", "matplotlib", "pandas", "cv2"} & modules


def test_semantic_evaluation_imports_no_torch_or_matplotlib(predictions):
    code = (
        "from alignbench.bench.cli import main\n"
        f"assert main(['eval', 'semantic', '--gt', {str(predictions.gt_root)!r}, '--pred', {str(predictions.pred_dir)!r}, '--quiet']) == 0"
    )
    modules = _modules_after(code)
    assert not {"torch", "matplotlib", "pandas"} & modules
    assert "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling" not in modules


def test_metrics_and_models_do_not_import_bench():
    modules = _modules_after("import alignbench.metrics.semantic, alignbench.metrics.boundary, alignbench.models")
    assert "alignbench.models" in modules and "alignbench.metrics.semantic" in modules
    assert not any(name.startswith("alignbench.bench") for name in modules)


def test_python_m_alignbench_matches_the_console_script(cli):
    result = cli("--help")
    assert result.returncode == 0 and "run-all" in result.stdout and "eval" in result.stdout


def test_every_package_folder_is_installed_under_the_alignbench_namespace():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"alignbench." + ".".join(init.parent.relative_to(REPO_ROOT).parts)
               for top in ("bench", "models", "metrics", "reports") for init in (REPO_ROOT / top).rglob("__init__.py")}
    assert folders | {"alignbench"} == set(config["packages"])
    assert config["package-dir"] == {"alignbench": "src/alignbench", **{f"alignbench.{top}": top for top in ("bench", "models", "metrics", "reports")}}


def test_no_generic_top_level_name_is_importable_after_install(tmp_path):
    """Run from a folder outside the repository: only `alignbench` is importable, not bench / models / ..."""
    code = ("import importlib.util, alignbench.bench.cli, alignbench.models, alignbench.metrics.semantic, alignbench.reports.tables\n"
            "print([n for n in ('bench', 'models', 'metrics', 'reports', 'helpers') if importlib.util.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert out.strip() == "[]"


def test_python_m_alignbench_runs_the_cli(tmp_path):
    result = subprocess.run([sys.executable, "-m", "alignbench", "models", "--task", "panoptic"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0 and "panoptic_fapn_r50" in result.stdout


def _third_party_imports(folders: tuple[str, ...]) -> set[str]:
    import ast

    names = set()
    for folder in folders:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in {"alignbench", "alignbench_test_helpers"}}


def _declared_distributions(*extras: str) -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]]
    return {re.split(r"[<>=!\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


# Modules whose distribution is not declared on purpose: each is imported only behind a guard that names the
# extra to install (faster_coco_eval: `compare`; submitit: `slurm`), or comes with a declared package
# (jupyter_client with nbclient).
_GUARDED_OR_TRANSITIVE = {"faster-coco-eval", "submitit", "jupyter-client"}


def test_every_imported_third_party_module_is_a_declared_dependency():
    """The package and the tests import only what pyproject declares (a missing pydantic once failed CI)."""
    from importlib.metadata import packages_distributions

    module_to_dists = packages_distributions()
    for folders, extras in ((("src", "bench", "models", "metrics", "reports"), ()), (("tests",), ("test",))):
        declared = _declared_distributions(*extras)
        for module in sorted(_third_party_imports(folders)):
            dists = {d.lower().replace("_", "-") for d in module_to_dists.get(module, [module])}
            assert dists & (declared | _GUARDED_OR_TRANSITIVE), f"{folders}: `import {module}` but none of {dists} is declared"
