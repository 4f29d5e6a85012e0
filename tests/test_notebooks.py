"""The analysis notebooks: stripped of outputs in the repository, each runs top to bottom without error;
the helpers of bench/notebook.py turn captures into figure inputs.

The notebooks run in a kernel of this interpreter (a kernel spec written for the test, so that a user-level
`python3` spec pointing elsewhere cannot interfere), in an empty working folder, with one synthetic-data and
model cache shared by the module: the first notebook that needs a briefly trained model trains it, the
others load it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbclient
import nbformat
import numpy as np
import pytest
import torch
from alignbench_test_helpers import REPO_ROOT
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from alignbench.bench.errors import UserError

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "alignbench-test"
# figures each notebook must show (image/png outputs), at least
# results_explorer's demo store is smoke-budget: its accuracy is no result, so only params are plotted
QUICK_PROTOCOL = 'PROTOCOL_OVERRIDES = {"iterations": 3, "batch_size": 2}'
MIN_FIGURES = {"feature_alignment": 2, "semantic_flow": 4, "boundary_analysis": 5, "results_explorer": 1}


def test_the_four_notebooks_are_there():
    assert sorted(path.stem for path in NOTEBOOKS) == sorted(MIN_FIGURES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_outputs_are_stripped_and_parameters_come_first(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code_cells:
        assert cell.outputs == [], f"{path.name}: a cell keeps outputs: {cell.source[:60]!r}"
        assert cell.execution_count is None, f"{path.name}: a cell keeps its execution count"
    parameters = code_cells[0]
    assert "parameters" in parameters.metadata.get("tags", []), f"{path.name}: the first code cell is not tagged 'parameters'"
    assert parameters.source.startswith("# Parameters") and "DEVICE = " in parameters.source


def test_helpers_turn_captures_of_fapn_and_sfnet_into_figure_inputs():
    from alignbench import models
    from alignbench.bench import notebook as nb
    from alignbench.reports.figures import grid_sample_flow_to_pixels

    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    torch.manual_seed(0)
    sfnet = models.build("sfnet_r18", neck_channels=32, head_channels=32)
    run = nb.run_captured(sfnet, image)
    assert run.prediction.shape == (64, 96) and run.prediction.max() < 19 and run.logits.shape == (1, 19, 64, 96)
    columns, flows = nb.alignment_panels(run.record)
    assert list(columns) == ["reference (fine lateral)", "upsampled (before)", "warped (after)"]
    assert list(columns["warped (after)"]) == list(flows) == ["p2", "p3", "p4"]  # fine to coarse
    assert columns["warped (after)"]["p2"].shape == (32, 16, 24)
    np.testing.assert_allclose(flows["p3"], grid_sample_flow_to_pixels(run.record["p3"]["flow"][0]))
    assert np.abs(flows["p2"]).max() > 0

    fapn = models.build("rt_fapn_r18", neck_channels=32, head_channels=32)
    run = nb.run_captured(fapn, image)
    columns, offsets = nb.alignment_panels(run.record)
    assert list(columns) == ["reference (fine lateral)", "upsampled (before)", "aligned (after)"]
    assert list(offsets) == ["p3", "p4"] and offsets["p3"].shape == (2, 8, 12)
    assert not np.any(offsets["p3"])  # FaPN's offset conv is zero-initialised
    rows = nb.flow_summary(offsets)
    assert rows[0] == {"level": "p3", "size": "8x12", "mean |flow| (px)": 0.0, "max |flow| (px)": 0.0}


def test_a_relative_store_path_is_the_repositorys_not_the_kernels(tmp_path, monkeypatch):
    from alignbench.bench import notebook as nb

    monkeypatch.chdir(tmp_path)  # a kernel runs in notebooks/ (or anywhere): the path must not depend on it
    assert nb.user_path("alignbench-output/results.sqlite") == REPO_ROOT / "alignbench-output" / "results.sqlite"
    assert nb.user_path(tmp_path / "x.sqlite") == tmp_path / "x.sqlite"


def test_protocol_models_are_run_alls_weights_when_its_store_has_them(tmp_path, monkeypatch):
    """The notebooks' protocol model is the very model run-all trained (same training key), loaded, not trained
    again; another seed is not in that store and is trained into the notebook cache."""
    from alignbench.bench import notebook as nb
    from alignbench.bench import pipeline as pipeline_module
    from alignbench.bench import train as training
    from alignbench.bench.planning import RunRequest
    from alignbench.bench.recipes import parse_overrides
    from alignbench.bench.runall import run_all

    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp_path / "cache"))
    quick = {"iterations": 2, "batch_size": 2}
    results = tmp_path / "out" / "results.sqlite"
    request = RunRequest(suites=("miniature_alignment_r18",), seeds=(0,), overrides=parse_overrides([f"{key}={value}" for key, value in quick.items()]))
    summary = run_all(request, results, progress=False, report=False)
    assert summary.ran == 3 and not summary.failed
    calls = []
    real_train = training.train
    # the trainer the pipeline calls: it returns at once when the checkpoint folder holds a finished run
    monkeypatch.setattr(pipeline_module, "train", lambda *args, **kwargs: calls.append(args[4]) or real_train(*args, **kwargs))
    model = nb.protocol_model("fapn", seed=0, results=results, overrides=quick)
    assert calls == [next((results.parent / "checkpoints").glob("semantic_fpn_fapn_r18-*"))]  # loaded from run-all's final.pt
    assert model.training is False
    nb.protocol_model("fapn", seed=1, results=results, overrides=quick)
    assert calls[-1].parent == tmp_path / "cache" / "notebooks"  # not in the store: trained in the cache
    with pytest.raises(UserError, match="row 'nope': suite miniature_alignment_r18 has rows fpn, fapn, sfnet"):
        nb.protocol_model("nope", results=results)


def test_per_image_scores_of_a_perfect_prediction(small_tree):
    from alignbench.bench import notebook as nb

    sample = nb.load_sample(nb.data_source(small_tree), 1)
    result = nb.image_scores(sample.train_ids, sample.label_ids, bands=(3,))
    assert result.miou == 1.0 and result.boundary_miou == {3: 1.0}


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory) -> KernelSpecManager:
    """A kernel spec that starts ipykernel with this very interpreter."""
    directory = tmp_path_factory.mktemp("kernels")
    spec = directory / KERNEL_NAME
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "alignbench tests",
        "language": "python",
    }))
    return KernelSpecManager(kernel_dirs=[str(directory)])


@pytest.fixture(scope="module")
def notebook_cache(tmp_path_factory) -> Path:
    """One ALIGNBENCH_CACHE for every notebook of the run (synthetic data and briefly trained models)."""
    return tmp_path_factory.mktemp("alignbench-cache")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_clean(path, kernel_specs, notebook_cache, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    # as papermill injects parameters: the protocol's models trained for a few iterations (the default trains
    # them for CPU minutes); the figures' code paths are the same
    parameters = next(index for index, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    notebook.cells.insert(parameters + 1, nbformat.v4.new_code_cell(QUICK_PROTOCOL))
    manager = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=kernel_specs)
    client = nbclient.NotebookClient(
        notebook, km=manager, timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    )
    environment = {**os.environ, "ALIGNBENCH_CACHE": str(notebook_cache), "PYTHONHASHSEED": "0"}
    started = time.perf_counter()
    # raises CellExecutionError, with the traceback, on any error; cleanup_kc: shut the kernel down after
    # (nbclient leaves alone a kernel whose manager it was given)
    client.execute(env=environment, cleanup_kc=True)
    print(f"{path.name}: {time.perf_counter() - started:.1f} s")  # shown with -s; not a timed test
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    pictures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(pictures) >= MIN_FIGURES[path.stem], f"{path.name}: {len(pictures)} figures shown"
    assert not manager.has_kernel
