"""The default `run-all`: the miniature protocol's suite (rows with builder options, the synthetic-miniature data)
plus the paper suites' params / GMACs without training, and its report (fidelity tables, CPU latency, verdicts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from alignbench_test_helpers import run_cli

from alignbench import models
from alignbench.bench import planning, storing
from alignbench.bench.data.catalog import get_dataset
from alignbench.bench.errors import UserError
from alignbench.bench.pipeline import Evaluation, Pipeline
from alignbench.bench.recipes import budget, training_config
from alignbench.bench.suites import load_suite, load_suites
from alignbench.bench.tasks import DataSource
from alignbench.metrics.vocabulary import METRICS

SUITE = """\
suite: {name}
task: semantic
recipe: miniature
metrics: [mIoU, params_m]
baseline: fpn
rows:
  - {{row: fpn, model: semantic_fpn_fpn_r18}}
  - {{row: small, model: semantic_fpn_fapn_r18, options: {options}}}
"""


def _suite(tmp_path, options: str, name: str = "opts"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SUITE.format(name=name, options=options))
    return path


@pytest.mark.parametrize("options, message", [
    ("{neck_chanels: 64}", "rows.1.options.neck_chanels: row 'small': unknown option of model 'semantic_fpn_fapn_r18' (known: "),
    ("{checkpoint: w.pth}", "rows.1.options.checkpoint: row 'small': not a row option (set by the row's `checkpoint:`"),
    ("{num_classes: 3}", "rows.1.options.num_classes: row 'small': not a row option (set by the data)"),
    # a value the builder refuses (FaPN's deformable conv needs a multiple of its 8 groups), found by a meta-device build
    ("{neck_channels: 65}", "rows.1.options: row 'small': model 'semantic_fpn_fapn_r18' cannot be built with"),
    ("[64]", "rows.1.options: input should be a valid dictionary"),
])
def test_row_options_are_checked_before_anything_runs(tmp_path, options, message):
    path = _suite(tmp_path, options)
    with pytest.raises(UserError) as error:
        load_suite(path)
    assert str(error.value).startswith(f"{path}:8: ") and message in str(error.value) and "\n" not in str(error.value)


def test_an_unknown_row_option_exits_2_with_one_line_and_writes_nothing(tmp_path):
    path = _suite(tmp_path, "{neck_chanels: 64}")
    result = run_cli("run-all", "--suite", path, "--results", tmp_path / "out" / "r.sqlite")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "row 'small'" in lines[0] and "neck_chanels" in lines[0]
    assert not (tmp_path / "out").exists()


def test_row_options_reach_the_model_its_identity_and_its_counts(tmp_path, small_tree):
    from alignbench.bench.tasks import resolve_data

    suite = load_suite(_suite(tmp_path, "{neck_channels: 64, head_channels: 64}"))
    assert suite.rows[1].options == {"neck_channels": 64, "head_channels": 64} and suite.rows[0].options == {}
    sources = resolve_data([f"cityscapes={small_tree}"])
    entries, _ = planning.plan([suite], sources, "smoke", [0])
    plain, small = entries
    assert small.pipeline.user_options == {"neck_channels": 64, "head_channels": 64}
    assert small.setup["options"] == {"neck_channels": 64, "head_channels": 64} and "options" not in plain.setup
    # the same model without the options is another experiment: another pipeline, training key and config hash
    wide = load_suite(_suite(tmp_path, "{}", name="wide"))
    (_, wide_entry), _ = planning.plan([wide], sources, "smoke", [0])
    assert wide_entry.pipeline is not small.pipeline
    assert wide_entry.training_key != small.training_key and wide_entry.setup_hash != small.setup_hash
    assert small.pipeline.build().neck.out_channels == 64 and plain.pipeline.build().neck.out_channels == 256
    request = planning.RunRequest(data=(f"cityscapes={small_tree}",), budget="smoke", seeds=(0,))
    storing.write_resolved_config(tmp_path / "resolved.json", planning.Plan(request, [suite], "smoke", list(request.data), sources, entries))
    rows = json.loads((tmp_path / "resolved.json").read_text())["suites"]["opts"]["rows"]
    assert rows["small"]["options"] == {"neck_channels": 64, "head_channels": 64} and rows["fpn"]["options"] == {}
    # params are counted with the row's options (default 256 / 128 channels otherwise)
    counted = small.pipeline._complexity(None, Evaluation(("params_m",)), {"params_m"}, None)["params_m"]
    assert counted == pytest.approx(models.measured_params("semantic_fpn_fapn_r18", neck_channels=64, head_channels=64) / 1e6)
    assert counted < models.measured_params("semantic_fpn_fapn_r18") / 1e6


def test_the_default_run_is_the_miniature_suite_and_the_paper_tables_params_and_gmacs(monkeypatch, small_tree):
    chosen = planning.chosen_suites(None, None)
    assert chosen == planning.chosen_suites(None, "miniature")
    miniature, *paper = chosen
    assert miniature.name == "miniature_alignment_r18" and miniature.is_comparison
    assert miniature.metrics == ("mIoU", "band_3", "band_5", "band_8", "band_12", "params_m", "gflops", "latency_ms")
    assert [row.options for row in miniature.rows] == [{"neck_channels": 64, "head_channels": 64}] * 3
    assert [row.model for row in miniature.rows] == ["semantic_fpn_fpn_r18", "semantic_fpn_fapn_r18", "semantic_fpn_sfnet_r18"]
    assert miniature.seeds == (0, 1, 2) and miniature.budget == "miniature" and miniature.data == ("synthetic-miniature",)
    assert planning.resolve_defaults(chosen, None, None) == ("miniature", ["synthetic-miniature"])
    # the paper suites with a params or GMACs column, restricted to those columns; the others are left out
    assert [suite.name for suite in paper] == ["fapn_supp_table1", "fapn_table1", "fpt_table1", "fpt_table4", "sfnet_table1c",
                                               "sfnet_table1d", "sfnet_table2b", "sfnet_table3"]
    assert all(suite.metrics and {METRICS[m].evaluator for m in suite.metrics} == {"complexity"} for suite in paper)
    assert all("(fidelity pass: " in suite.title for suite in paper)
    # the plan: 3 necks x 3 seeds, then one entry per paper row (4 + 8 + 8 + 8 + 5 + 10 + 4 + 3 = 50)
    # plan only: no code fingerprints (a meta build and trace of each of the 50 models) and no COCO export for them
    monkeypatch.setattr(Pipeline, "code", property(lambda self: {"version": "test", "model": self.name}))
    source = DataSource(get_dataset("synthetic"), small_tree, "test scenes", "synthetic")
    entries, skipped = planning.plan(chosen, [source], "miniature", None)
    assert not skipped
    assert len(entries) == 9 + 50
    trained = [entry for entry in entries if entry.pipeline.trains([entry.evaluation])]
    assert {entry.suite.name for entry in trained} == {"miniature_alignment_r18"} and len(trained) == 9
    assert sorted({entry.seed for entry in trained}) == [0, 1, 2]
    assert all(entry.train == training_config("miniature", "miniature") for entry in trained)


def test_an_explicit_budget_without_suite_runs_every_paper_table_with_all_its_metrics():
    for name in ("smoke", "short", "paper"):
        chosen = planning.chosen_suites(None, name)
        assert chosen == [suite for suite in load_suites() if not suite.is_comparison]
        assert {"mIoU", "PQ", "AP_bbox", "fps"} <= {metric for suite in chosen for metric in suite.metrics}
        assert len(chosen) == 19 and sum(len(suite.rows) for suite in chosen) == 95  # the former default: 95 entries at seed 0
    assert [suite.name for suite in planning.chosen_suites(["fapn_table2"], None)] == ["fapn_table2"]


def test_complexity_only_pipelines_never_train_nor_write_checkpoints(tmp_path, small_tree, monkeypatch):
    from alignbench.bench import pipeline as pipeline_module
    from alignbench.bench.tasks import resolve_data

    def refuse(*args, **kwargs):
        raise AssertionError("trained")

    monkeypatch.setattr(pipeline_module, "train", refuse)  # the trainer the pipeline calls
    (source,) = resolve_data([f"cityscapes={small_tree}"])
    pipeline = Pipeline("semantic_fpn_fpn_r18", source, training_config("miniature", "smoke"), budget("smoke"), 0,
                        options={"neck_channels": 32, "head_channels": 32})
    evaluations = [Evaluation(("params_m",)), Evaluation(("params_m", "gflops"), flops_size=(64, 128))]
    assert not pipeline.trains(evaluations)
    checkpoints = tmp_path / "checkpoints"
    outcomes = pipeline.run(evaluations, checkpoints)
    assert set(outcomes[0].metrics) == {"params_m"} and set(outcomes[1].metrics) == {"params_m", "gflops"}
    assert outcomes[1].metrics["gflops"] > 0 and outcomes[0].training_log is None
    assert not checkpoints.exists() and not (tmp_path / "logs").exists()
    # accuracy or speed needs the trained model: that pipeline trains
    assert pipeline.trains([Evaluation(("mIoU",))]) and pipeline.trains([Evaluation(("params_m",)), Evaluation(("latency_ms",))])


def test_the_synthetic_miniature_preset(tmp_path, monkeypatch):
    from alignbench.bench import tasks
    from alignbench.bench.data.synthetic import SYNTHETIC_PRESETS, SynthSpec
    from alignbench.bench.tasks import resolve_data

    asked = []
    monkeypatch.setattr(tasks, "ensure_synthetic", lambda spec, progress=True: asked.append(spec) or tmp_path)
    (source,) = resolve_data(["synthetic-miniature"])
    assert asked == [SynthSpec(n_train=128, n_val=64, size=(128, 256), seed=0)] == [SYNTHETIC_PRESETS["synthetic-miniature"]]
    assert source.dataset.name == "synthetic" and source.spec == "synthetic-miniature"
    assert source.description.startswith("synthetic 128x256 (128 train / 64 val, seed 0, ")
    with pytest.raises(UserError, match="expected 'synthetic', 'synthetic-miniature', 'NAME=PATH'"):
        resolve_data(["synthetic-tiny"])
    # `data synth --preset`: the preset's size and seed, counts changed by the options
    result = run_cli("data", "synth", "--preset", "synthetic-miniature", "--n-train", "1", "--n-val", "1", "--out", tmp_path / "d")
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "d" / "synth.json").read_text())
    assert (written["size"], written["n_train"], written["n_val"], written["seed"]) == ([128, 256], 1, 1, 0)
    refused = run_cli("data", "synth", "--preset", "nope", "--out", tmp_path / "e")
    assert refused.returncode == 2 and "unknown preset 'nope'" in refused.stderr


# --- the report -------------------------------------------------------------------------------------------


def _results(values, devices=("cpu",), budget_name="miniature", seeds=(0,)):
    from alignbench.reports.report import SuiteResults

    return SuiteResults(values={row: {m: v if isinstance(v, list) else [v] for m, v in metrics.items()} for row, metrics in values.items()},
                        class_iou={}, seeds=list(seeds), devices=list(devices), data=["synthetic"], budget=budget_name, timing=[])


def _cells(table, method: str) -> list[str]:
    return [cell.text for cell in next(row for row in table.rows if row[0].text == method)]


def test_a_complexity_only_paper_suite_is_a_fidelity_table():
    from alignbench.reports.report import GAP_FOOTNOTE, NOT_MEASURED_FOOTNOTE, suite_table

    restricted = next(suite for suite in planning.default_run_suites() if suite.name == "fapn_table1")
    paper = restricted.reference_table()
    paper_params = {row.key: row.values["params_m"] for row in paper.rows}
    results = _results({"fpn_r50": {"params_m": paper_params["fpn_r50"] * 1.01}, "fapn_r50": {"params_m": paper_params["fapn_r50"] * 1.07}})
    table = suite_table(restricted, paper, results)
    assert table.header == ["method", "backbone", "#Params (M) ours", "#Params (M) paper", "#Params (M) gap"]  # no accuracy column
    assert _cells(table, "FPN")[4] == "+1.0%" and _cells(table, "FPN + FAM + FSM (FaPN)")[4] == "+7.0% ⚑"
    assert GAP_FOOTNOTE in table.footnotes and NOT_MEASURED_FOOTNOTE not in table.footnotes
    assert any(note.startswith("Ours: counted from the models' definitions (nothing trained") for note in table.footnotes)
    assert not any("bootstrap" in note for note in table.footnotes)  # no intervals where no accuracy was measured
    # the same store shown with the whole suite (`alignbench report`): the paper's mIoU beside "—", with the footnote
    (full,) = load_suites(["fapn_table1"])
    table = suite_table(full, paper, results)
    assert _cells(table, "FPN")[5:7] == ["—", "77.4 (+2.6)"]
    assert NOT_MEASURED_FOOTNOTE in table.footnotes and "`--budget short|paper` trains" in NOT_MEASURED_FOOTNOTE
    assert not any(cell.bold for row in table.rows for cell in row)


def test_latency_is_labelled_with_the_device_kind_it_was_timed_on():
    from alignbench.reports.report import suite_table

    (miniature,) = load_suites(["miniature_alignment_r18"])
    paper = miniature.reference_table()
    measured = {"fpn": {"params_m": 11.6, "latency_ms": 20.0}}
    assert "CPU latency (ms)" in suite_table(miniature, paper, _results(measured)).header
    assert "GPU latency (ms)" in suite_table(miniature, paper, _results(measured, devices=("cuda:0",))).header
    assert "params (M)" in suite_table(miniature, paper, _results(measured)).header


def _semantic_run(rng, rate: float, images: int = 24) -> dict:
    """Per-image (TP, FP, FN) of 4 classes on the full image and 4 bands, with a given share of pixels right."""
    pixels = rng.integers(50, 100, size=(images, 5, 4))
    right = np.round(pixels * rate).astype(np.int64)
    return {"kind": np.array("semantic"), "index": np.arange(images), "counts": np.stack([right, pixels - right, pixels - right], -1),
            "bands": np.array([3, 5, 8, 12])}


def test_the_summary_says_what_ran_and_whether_each_neck_beats_fpn(tmp_path):
    from alignbench.reports.report import render_report, report_summary, verdict_tables

    (miniature,) = load_suites(["miniature_alignment_r18"])
    rng = np.random.default_rng(0)
    rates = {"fpn": 0.60, "fapn": 0.75, "sfnet": 0.45}
    results = _results({row: {"mIoU": rate, "params_m": 11.6} for row, rate in rates.items()}, seeds=(0, 1))
    for row, rate in rates.items():
        for seed in (0, 1):
            results.record_ids[(row, seed)] = len(results.record_ids)
            results.statistics.setdefault(row, {})[seed] = _semantic_run(rng, rate)
    # sfnet's band 3 px: as good as fpn on some images, worse on others, better on the rest: the interval crosses 0
    mixed = {**results.statistics["sfnet"][0], "counts": results.statistics["sfnet"][0]["counts"].copy()}
    mixed["counts"][:, 1] = results.statistics["fpn"][0]["counts"][:, 1]
    mixed["counts"][::2, 1, :, 0] -= 3
    mixed["counts"][1::2, 1, :, 0] += 3
    results.statistics["sfnet"] = {0: mixed, 1: mixed}
    paper = miniature.reference_table()
    restricted = next(suite for suite in planning.default_run_suites() if suite.name == "sfnet_table3")
    published = {row.key: row.values.get("params_m") for row in restricted.reference_table().rows}
    fidelity = _results({"sfnet_resnet18": {"params_m": published["sfnet_resnet18"]}, "sfnet_df1": {"params_m": published["sfnet_df1"] * 1.2}})
    sections = [(miniature, paper, results, ""), (restricted, restricted.reference_table(), fidelity, "")]
    (verdicts,) = verdict_tables(sections)
    assert verdicts.header == ["row", "mIoU", "band mIoU 3 px", "band mIoU 5 px", "band mIoU 8 px", "band mIoU 12 px"]
    fapn, sfnet = (_cells(verdicts, label) for label in ("FaPN / Semantic FPN R18", "FPN + SFNet FAM / Semantic FPN R18"))
    assert all(cell.startswith("yes: +") for cell in fapn[1:])
    assert sfnet[1].startswith("worse: -") and sfnet[2].startswith("no (interval crosses 0): ")
    summary = report_summary(sections)
    assert any(line.startswith(miniature.title) and "`semantic_fpn_fapn_r18`" in line and "seeds 0, 1" in line for line in summary)
    assert any(line.startswith("Fidelity pass: 2 paper rows of 1 paper tables") and "1 of these rows differ" in line for line in summary)
    written = render_report(sections, tmp_path, "Results.", formats=("md",))
    text = written["md"].read_text()
    assert text.index("does each row beat FPN / Semantic FPN R18 with 95% confidence?") < text.index(f"### {miniature.title}\n")
    # with per-seed scores the verdict also asks the per-seed differences: fapn better on both seeds by 10 and 14
    # points (t interval +12 +- 25.4: crosses 0), so the images say yes and the seeds say no
    results.by_seed = {"fpn": {"mIoU": {0: 0.60, 1: 0.60}}, "fapn": {"mIoU": {0: 0.70, 1: 0.74}}}  # fractions, shown in %
    (verdicts,) = verdict_tables(sections)
    fapn = _cells(verdicts, "FaPN / Semantic FPN R18")
    assert fapn[1].startswith("yes: +") and "; over seeds no (interval crosses 0): +12.0 [" in fapn[1]
    assert "over seeds" not in fapn[2]  # no per-seed band scores given: the image bootstrap alone
    # under the smoke budget accuracy is no result: no verdict
    results.accuracy_shown = False
    assert verdict_tables(sections) == []


def test_a_run_with_overrides_says_so_in_the_table_and_the_summary():
    from alignbench.bench.results import ResultRecord
    from alignbench.reports.report import collect, report_summary, suite_table

    (miniature,) = load_suites(["miniature_alignment_r18"])
    overrides = {"train": {"iterations": 2, "crop": [64, 128]}, "budget": {"timing_iterations": 1}}
    records = [ResultRecord("miniature_alignment_r18", row, 0, f"semantic_fpn_{row}_r18", "semantic", "miniature", "synthetic", "h",
                            {"overrides": overrides}, {"mIoU": 0.5}, "2026-01-01T00:00:00+00:00", "2026-01-01T00:01:00+00:00", 60.0,
                            device="cpu")
               for row in ("fpn", "fapn")]
    results = collect(records, "miniature_alignment_r18", "miniature")
    assert results.overrides == ["crop=64x128", "iterations=2", "timing_iterations=1"]
    table = suite_table(miniature, miniature.reference_table(), results)
    assert any("; overrides --set crop=64x128, iterations=2, timing_iterations=1" in note for note in table.footnotes)
    summary = report_summary([(miniature, miniature.reference_table(), results, "")])
    assert any("budget miniature with --set crop=64x128, iterations=2, timing_iterations=1;" in line for line in summary)
