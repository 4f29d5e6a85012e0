"""A plugin neck benchmarked end to end on synthetic data (models, profile, run-all with a comparison suite,
report with confidence intervals), the suites listing, suite-file validation and `--set` in the config hash."""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest
from alignbench_test_helpers import run_cli

from alignbench.bench.errors import UserError
from alignbench.bench.suites import load_suite

# A complete plugin: a neck with an operator fvcore has no cost for (logcumsumexp), so profile must name it.
PLUGIN = '''
import torch
from torch import nn
from alignbench import models


@models.register_neck("e2eneck")
class E2ENeck(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.lateral = nn.ModuleDict({k: nn.Conv2d(c, out_channels, 1) for k, c in in_channels.items()})
        self.strides = {f"p{k[1:]}": 2 ** int(k[1:]) for k in in_channels}

    def forward(self, features):
        return {f"p{k[1:]}": torch.logcumsumexp(conv(features[k]), dim=1) for k, conv in self.lateral.items()}
'''

SUITE = """\
suite: e2e_compare
title: E2E neck vs FPN
task: semantic
recipe: fapn_semantic
metrics: [mIoU, band_3]
baseline: fpn
seeds: [0, 1]
rows:
  - {row: fpn, model: semantic_fpn_fpn_r18}
  - {row: mine, model: semantic_fpn_e2eneck_r18}
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    (folder / "e2eneck.py").write_text(PLUGIN)
    (folder / "e2e_compare.yaml").write_text(SUITE)
    env = {k: v for k, v in os.environ.items() if k != "ALIGNBENCH_PLUGINS"}
    env["ALIGNBENCH_CACHE"] = str(folder / "cache")
    return folder, env


def test_plugin_neck_models_and_profile(workspace):
    folder, env = workspace
    result = run_cli("--plugin", folder / "e2eneck.py", "models", "--json", env=env)
    assert result.returncode == 0, result.stderr
    names = {row["name"] for row in json.loads(result.stdout)}
    assert {f"{scaffold}_e2eneck_{backbone}" for scaffold in ("semantic_fpn", "pointrend", "faster_rcnn", "mask_rcnn", "panoptic")
            for backbone in ("r18", "r34", "r50", "r101")} <= names
    result = run_cli("--plugin", folder / "e2eneck.py", "profile", "semantic_fpn_e2eneck_r18", "--input", "64x128", "--json", env=env)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert "aten::logcumsumexp" in row["uncounted_ops"]  # named, not silently counted as zero
    table = run_cli("--plugin", folder / "e2eneck.py", "profile", "semantic_fpn_e2eneck_r18", "--input", "64x128", env=env)
    assert "operators without a cost handle: aten::logcumsumexp" in table.stdout


def test_plugin_neck_run_all_comparison_suite_and_report(workspace):
    folder, env = workspace
    out = folder / "out"
    # a budget whose accuracy counts as a result (smoke's is hidden), cut down by overrides: the intervals are
    # rendered; their values mean nothing after one iteration
    result = run_cli("--plugin", folder / "e2eneck.py", "run-all", "--suite", folder / "e2e_compare.yaml", "--results",
                     out / "results.sqlite", "--budget", "short", "--set", "iterations=1", "--set", "batch=2",
                     "--set", "crop=64x128", "--set", "eval_images=3", "--set", "timing_iterations=1", env=env)
    assert result.returncode == 0, result.stderr
    assert "4 entries" in result.stdout  # 2 rows x the suite's 2 seeds
    report = (out / "report" / "report.md").read_text()
    assert "### E2E neck vs FPN" in report and " paper" not in report.split("### E2E neck vs FPN")[1].split("\n")[2]
    differences = report.split("differences to FPN / Semantic FPN R18")[1]
    line = next(text for text in differences.splitlines() if text.startswith("| E2ENeck"))
    assert line.count("[") == 4  # mIoU and band_3, each over images (bootstrap) and over seeds (t)
    assert "paired bootstrap" in report and "Student-t" in report
    assert "per-class IoU (%)" in report and "e2e_compare_mine_confusion.png" in report
    resolved = json.loads((out / "resolved_config.json").read_text())
    assert resolved["overrides"] == {"train": {"iterations": 1, "batch_size": 2, "crop": [64, 128]},
                                     "budget": {"eval_max_images": 3, "timing_iterations": 1}}
    assert resolved["suites"]["e2e_compare"]["rows"]["mine"]["seeds"] == [0, 1]
    assert any("e2eneck.py" in plugin for plugin in resolved["plugins"])
    logs = sorted((out / "logs").glob("*.jsonl"))
    assert len(logs) == 4 and all(log.read_text().strip() for log in logs)
    assert len(list((out / "checkpoints").glob("*/final.pt"))) == 4  # the short budget keeps the weights

    from alignbench.bench.results import ResultsStore
    from alignbench.metrics.statistics import mean_iou

    with ResultsStore(out / "results.sqlite", create=False) as store:
        records = store.records()
        assert len(records) == 4
        for record in records:
            stored = store.statistics(record.id)
            assert stored["counts"].shape[:2] == (3, 5)  # 3 images; full image + 4 bands
            # the per-image counts add up to the stored dataset-level score
            assert mean_iou(stored["counts"][:, 0].sum(axis=0)) == pytest.approx(record.metrics["mIoU"], abs=1e-9)
            assert np.array_equal(stored["index"], [0, 1, 2])
            assert "overrides" in record.config

    # the same run again: everything is already complete (overrides are part of the key, unchanged)
    again = run_cli("--plugin", folder / "e2eneck.py", "run-all", "--suite", folder / "e2e_compare.yaml", "--results",
                    out / "results.sqlite", "--budget", "short", "--set", "iterations=1", "--set", "batch=2", "--set", "crop=64x128",
                    "--set", "eval_images=3", "--set", "timing_iterations=1", "--no-report", env=env)
    assert again.returncode == 0 and "4 already complete" in again.stdout, again.stdout + again.stderr


def test_overrides_change_the_config_hash(workspace, monkeypatch):
    folder, env = workspace
    monkeypatch.setenv("ALIGNBENCH_CACHE", env["ALIGNBENCH_CACHE"])
    from alignbench.bench.planning import plan
    from alignbench.bench.recipes import parse_overrides
    from alignbench.bench.tasks import resolve_data

    suite = load_suite(_write(folder, "hash_suite", SUITE.replace("e2e_compare", "hash_suite").replace("semantic_fpn_e2eneck_r18", "semantic_fpn_fapn_r18")))
    sources = resolve_data(["synthetic"])

    def hashes(*pairs):
        entries, _ = plan([suite], sources, "smoke", [0], overrides=parse_overrides(list(pairs)))
        return [entry.config_hash for entry in entries], entries

    plain, entries = hashes()
    assert hashes()[0] == plain
    for pair in ("iterations=3", "batch=4", "lr=0.5", "crop=32x64", "eval_size=64x128", "eval_images=2"):
        changed, changed_entries = hashes(pair)
        assert all(a != b for a, b in zip(plain, changed)), pair
    assert changed_entries[0].budget.eval_max_images == 2
    _, entries = hashes("iterations=3", "batch=4")
    assert entries[0].train.iterations == 3 and entries[0].train.batch_size == 4
    _, entries = hashes("eval_size=64x128")
    assert entries[0].eval_size == (64, 128)


def test_suites_listing(workspace):
    folder, env = workspace
    result = run_cli("suites", "--json", env=env)
    assert result.returncode == 0, result.stderr
    suites = {suite["name"]: suite for suite in json.loads(result.stdout)}
    template = suites["compare_alignment_r18"]
    assert template["kind"] == "comparison" and template["task"] == "semantic" and template["baseline"] == "fpn"
    assert [row["model"] for row in template["rows"]] == ["semantic_fpn_fpn_r18", "semantic_fpn_fapn_r18", "semantic_fpn_sfnet_r18"]
    assert template["seeds"] == [0, 1, 2] and template["metrics"] == ["mIoU", "band_3", "band_5", "band_8", "band_12"]
    assert suites["fapn_table1"]["kind"] == "paper" and suites["fapn_table1"]["table"] == "Table 1"
    text = run_cli("--plugin", folder / "e2eneck.py", "suites", "--suite", folder / "e2e_compare.yaml", env=env)
    assert text.returncode == 0 and "e2e_compare" in text.stdout and "semantic_fpn_e2eneck_r18" in text.stdout


def _write(folder, name: str, text: str):
    path = folder / f"{name}.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


BASE = """\
suite: {name}
task: semantic
recipe: fapn_semantic
metrics: [mIoU]
baseline: fpn
rows:
  - {{row: fpn, model: semantic_fpn_fpn_r18}}
  - {{row: fapn, model: semantic_fpn_fapn_r18}}
"""


@pytest.mark.parametrize("change, line, message", [
    (("metrics: [mIoU]", "metrics: mIoU"), 4, "metrics: input should be a valid list"),
    (("recipe: fapn_semantic", "recipe: [fapn_semantic]"), 3, "recipe: input should be a valid string"),
    (("baseline: fpn", "baseline: fpn\nseeds: ['0', 1]"), 6, "seeds.0: input should be a valid integer (got '0')"),
    (("baseline: fpn", "baseline: fpn\nseeds: [-1]"), 6, "seeds.0: seeds must be non-negative"),
    (("baseline: fpn", "baseline: fpn\nbatch: 2"), 6, "batch: unknown field (known: suite, paper"),
    (("{row: fapn, model: semantic_fpn_fapn_r18}", "{row: fapn, model: semantic_fpn_fapn_r18, train: {batch_size: 0}}"), 8,
     "rows.1.train.batch_size: must be positive (got 0)"),
    (("{row: fapn, model: semantic_fpn_fapn_r18}", "{row: fapn, model: semantic_fpn_fapn_r18, train: {batch_size: -2}}"), 8,
     "rows.1.train.batch_size: must be positive"),
    (("{row: fapn, model: semantic_fpn_fapn_r18}", "{row: fapn, model: semantic_fpn_fapn_r18, train: {iterations: '100'}}"), 8,
     "rows.1.train.iterations: Input should be a valid integer (got '100')"),
    (("{row: fapn, model: semantic_fpn_fapn_r18}", "{row: fapn, model: semantic_fpn_fapn_r18, trian: {}}"), 8,
     "rows.1.trian: unknown field (known: row, model, train"),
    (("{row: fapn, model: semantic_fpn_fapn_r18}", "{row: fapn, model: [semantic_fpn_fapn_r18]}"), 8, "rows.1.model: input should be a valid string"),
    (("{row: fapn, model: semantic_fpn_fapn_r18}", "{row: fapn, model: semantic_fpn_fapn_r18, input_size: ['64', 128]}"), 8,
     "rows.1.input_size.0: input should be a valid integer"),
    (("{row: fapn, model: semantic_fpn_fapn_r18}", "{row: fpn, model: semantic_fpn_fapn_r18}"), 8, "row 'fpn' appears twice"),
    (("baseline: fpn", "baseline: nope"), 5, "baseline: 'nope' is not one of the suite's rows"),
    (("baseline: fpn", "baseline: fpn\nbudget: huge"), 6, "budget: unknown budget 'huge'"),
    (("metrics: [mIoU]", "metrics: [AP_bbox]"), 4, "metrics.0: 'AP_bbox' is not a semantic metric"),
])
def test_suite_type_errors_name_file_line_and_field(tmp_path, change, line, message):
    text = BASE.format(name="bad").replace(*change)
    path = _write(tmp_path, "bad", text)
    with pytest.raises(UserError) as error:
        load_suite(path)
    assert str(error.value).startswith(f"{path}:{line}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_suite_file_that_is_not_utf8_names_the_line(tmp_path):
    path = _write(tmp_path, "latin", BASE.format(name="latin").replace("recipe: fapn_semantic", "recipe: fapn_semantic\nnote: caf\xe9").encode("latin-1"))
    with pytest.raises(UserError, match=rf"^{path}:4: not UTF-8 text"):
        load_suite(path)


def test_comparison_suite_defaults_and_command_line_overrides(tmp_path):
    text = BASE.format(name="defaults").replace("baseline: fpn", "baseline: fpn\nseeds: [3, 4]\nbudget: short\ndata: [synthetic]")
    suite = load_suite(_write(tmp_path, "defaults", text))
    assert suite.is_comparison and suite.seeds == (3, 4) and suite.budget == "short" and suite.data == ("synthetic",)
    assert suite.compare == {"baseline": "fpn"} and suite.baseline_row == "fpn"
    from alignbench.bench.planning import resolve_defaults

    assert resolve_defaults([suite], None, None) == ("short", ["synthetic"])
    assert resolve_defaults([suite], "smoke", ["cityscapes=/x"]) == ("smoke", ["cityscapes=/x"])
    table = suite.reference_table()
    assert [row.key for row in table.rows] == ["fpn", "fapn"] and all(not row.values for row in table.rows)
    # a paper suite cannot take comparison fields, a comparison suite cannot take a paper table
    with pytest.raises(UserError, match="a comparison suite field"):
        load_suite(_write(tmp_path, "paperish", textwrap.dedent(BASE.format(name="paperish")).replace("task:", "paper: FaPN\ntable: Table 1\ntask:")))


def test_the_readme_plugin_works_as_printed(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme.split("A complete plugin,\n`myneck.py`:\n\n```python\n")[1].split("```")[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 12  # with the 3 commands: 15 lines or fewer
    (tmp_path / "myneck.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if k != "ALIGNBENCH_PLUGINS"}
    result = run_cli("--plugin", tmp_path / "myneck.py", "models", "--task", "semantic", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert {"semantic_fpn_myneck_r18", "pointrend_myneck_r101"} <= {row["name"] for row in json.loads(result.stdout)}
