"""The one pipeline (build, train, evaluate), its cache keys, and the results store's superseded rows.

The stale-results test copies the package into a temporary folder, changes a model's definition there (its
forward, every shape kept) and shows that `run-all` recomputes the entry and keeps the old row, superseded.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from alignbench_test_helpers import REPO_ROOT, run_cli

from alignbench import models
from alignbench.bench import provenance
from alignbench.bench.errors import UserError
from alignbench.bench.results import ResultRecord, ResultsStore

SUITE = """\
suite: {name}
paper: FaPN
table: Table I
task: semantic
recipe: fapn_realtime
metrics: [mIoU, params_m]
rows:
  - {{row: fpn_r18, model: rt_fpn_r18, input_size: [64, 128]{extra}}}
"""


def _suite(directory: Path, name: str = "pipeline_suite", extra: str = "") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(SUITE.format(name=name, extra=extra))
    return path


def _package_copy(root: Path) -> Path:
    """The alignbench package assembled from the repository's folders under `root` (importable with PYTHONPATH=root)."""
    package = root / "alignbench"
    shutil.copytree(REPO_ROOT / "src" / "alignbench", package, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("bench", "models", "metrics", "reports"):
        shutil.copytree(REPO_ROOT / folder, package / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _rows(database: Path) -> list[dict]:
    with sqlite3.connect(database) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute("SELECT * FROM results ORDER BY id")]


@pytest.mark.slow
def test_a_changed_model_definition_is_recomputed_and_the_old_row_superseded(small_tree, tmp_path):
    copy = _package_copy(tmp_path / "copy")
    environment = {**os.environ, "PYTHONPATH": str(copy), "ALIGNBENCH_CACHE": str(tmp_path / "cache")}
    database = tmp_path / "out" / "results.sqlite"
    suite = _suite(tmp_path)
    command = ["run-all", "--suite", suite, "--data", f"cityscapes={small_tree}", "--results", database, "--device", "cpu"]
    first = run_cli(*command, env=environment)
    assert first.returncode == 0, first.stderr
    assert "1 entries, 0 already complete, 1 run" in first.stdout
    assert not list((database.parent / "checkpoints").rglob("*.pt"))  # the smoke budget's throwaway weights are deleted
    (old,) = _rows(database)

    # change the model's definition in the copy: its top-level class now negates its logits (every shape kept)
    model_class = type(models.build("rt_fpn_r18"))
    # relative to the imported package (the repository's folder here, site-packages under tox)
    source = Path(inspect.getsourcefile(model_class)).resolve().relative_to(Path(models.__file__).resolve().parent)
    changed = copy / "alignbench" / "models" / source
    changed.write_text(changed.read_text() + (
        f"\n\n_forward_before_the_change = {model_class.__name__}.forward\n\n\n"
        "def _negated_forward(self, *args, **kwargs):\n    return -_forward_before_the_change(self, *args, **kwargs)\n\n\n"
        f"{model_class.__name__}.forward = _negated_forward\n"
    ))
    second = run_cli(*command, env=environment)
    assert second.returncode == 0, second.stderr
    assert "1 entries, 0 already complete, 1 run" in second.stdout  # recomputed, not "already complete"
    old_now, new = _rows(database)
    assert old_now["id"] == old["id"] and old_now["metrics"] == old["metrics"]  # the old row is kept ...
    assert old_now["superseded"] == 1 and new["superseded"] == 0  # ... marked superseded
    assert new["setup_hash"] == old["setup_hash"] and new["config_hash"] != old["config_hash"]
    assert new["model_fingerprint"] != old["model_fingerprint"] and new["code_version"] == old["code_version"]
    report = (database.parent / "report" / "report.md").read_text()
    assert f"model {new['model_fingerprint'][:8]}" in report and f"model {old['model_fingerprint'][:8]}" not in report
    assert "1 more superseded" in report

    third = run_cli(*command, env=environment)
    assert third.returncode == 0 and "1 already complete, 0 run" in third.stdout
    assert len(_rows(database)) == 2


SCHEMA_1 = """
CREATE TABLE results (id INTEGER PRIMARY KEY, suite TEXT NOT NULL, row TEXT NOT NULL, seed INTEGER NOT NULL, model TEXT NOT NULL,
    task TEXT NOT NULL, budget TEXT NOT NULL, data TEXT NOT NULL, config_hash TEXT NOT NULL, config TEXT NOT NULL, metrics TEXT NOT NULL,
    device TEXT, git_commit TEXT, torch TEXT, cuda TEXT, gpu TEXT, started_at TEXT NOT NULL, finished_at TEXT NOT NULL,
    duration_s REAL NOT NULL, UNIQUE (suite, row, seed, config_hash));
CREATE TABLE complexity (model TEXT NOT NULL, height INTEGER NOT NULL, width INTEGER NOT NULL, figures TEXT NOT NULL,
    PRIMARY KEY (model, height, width));
INSERT INTO results (suite, row, seed, model, task, budget, data, config_hash, config, metrics, started_at, finished_at, duration_s)
    VALUES ('s', 'r', 0, 'm', 'semantic', 'smoke', 'synthetic', 'aaaa', '{}', '{"mIoU": 0.5}', 't0', 't1', 1.0);
INSERT INTO complexity VALUES ('m', 64, 128, '{"params_m": 1.0}');
PRAGMA application_id = 1094864451;
PRAGMA user_version = 1
"""


def _record(config_hash: str, setup_hash: str, miou: float) -> ResultRecord:
    return ResultRecord("s", "r", 0, "m", "semantic", "smoke", "synthetic", config_hash, {}, {"mIoU": miou}, "t2", "t3", 1.0,
                        setup_hash=setup_hash, code_version="9.9", model_fingerprint="f" * 16)


def test_a_schema_1_store_is_migrated_in_place_and_its_rows_superseded_by_new_code(tmp_path):
    database = tmp_path / "old.sqlite"
    with sqlite3.connect(database) as connection:
        connection.executescript(SCHEMA_1)
    with ResultsStore(database) as store:
        (old,) = store.records()
        assert old.setup_hash == "aaaa" and not old.superseded and old.metrics == {"mIoU": 0.5} and old.code_version is None
        assert store.complexity("m", (64, 128), "") == {"params_m": 1.0}  # kept, under no code identity
        assert store.complexity("m", (64, 128), "abc") is None  # never served to other code
        assert store.add(_record("bbbb", "aaaa", 0.6))
        old, new = store.records()
        assert old.superseded and not new.superseded
        assert [r.config_hash for r in store.records(include_superseded=False)] == ["bbbb"]
        assert store.make_current("s", "r", 0, "aaaa", "aaaa") == 2  # back to the code that made the old row
        assert [r.config_hash for r in store.records(include_superseded=False)] == ["aaaa"]
        assert store.make_current("s", "r", 0, "aaaa", "aaaa") == 0  # nothing to change: nothing written
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 4  # schema 1 -> 2 -> 3 (statistics table) -> 4 (leases table)


def test_eval_only_without_a_checkpoint_is_an_error(cli):
    result = cli("train", "rt_fpn_r18", "--eval-only")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--eval-only" in lines[0] and "--checkpoint" in lines[0]


def test_a_suite_row_checkpoint_is_evaluated_not_trained(small_tree, tmp_path, monkeypatch):
    from alignbench.bench import pipeline as pipeline_module
    from alignbench.bench.planning import RunRequest
    from alignbench.bench.runall import run_all

    torch.manual_seed(1)
    weights = tmp_path / "weights" / "fpn.pt"
    weights.parent.mkdir()
    torch.save({"model": models.build("rt_fpn_r18").state_dict()}, weights)

    def no_training(*args, **kwargs):
        raise AssertionError("a row with a checkpoint must not be trained")

    monkeypatch.setattr(pipeline_module, "train", no_training)  # the trainer the pipeline calls
    suite = _suite(tmp_path, extra=", checkpoint: weights/fpn.pt")
    database = tmp_path / "r.sqlite"
    summary = run_all(RunRequest(suites=(str(suite),), data=(f"cityscapes={small_tree}",)), database, device="cpu", progress=False, report=False)
    assert summary.ran == 1 and not summary.failed, summary.failed
    with ResultsStore(database) as store:
        (record,) = store.records()
    assert record.config["checkpoint"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert 0.0 <= record.metrics["mIoU"] <= 1.0 and record.metrics["params_m"] > 10

    missing = _suite(tmp_path, name="missing_checkpoint", extra=", checkpoint: nowhere.pt")
    with pytest.raises(UserError, match=r"missing_checkpoint.yaml:8: rows.0.checkpoint: .*nowhere.pt: file not found"):
        run_all(RunRequest(suites=(str(missing),), data=(f"cityscapes={small_tree}",)), database, device="cpu", progress=False, report=False)


def test_paper_budget_from_random_initialisation_says_so_once(small_tree, tmp_path, monkeypatch, caplog):
    from alignbench.bench import execution, runall
    from alignbench.bench.planning import RunRequest
    from alignbench.bench.suites import load_suites
    from alignbench.reports.paper import paper_table
    from alignbench.reports.report import RANDOM_INIT_FOOTNOTE, SuiteResults, suite_table

    monkeypatch.setattr(execution, "run_group", lambda *args, **kwargs: None)  # the warning only: no paper-length training
    suite = _suite(tmp_path)
    with caplog.at_level(logging.WARNING):
        runall.run_all(RunRequest(suites=(str(suite),), data=(f"cityscapes={small_tree}",), budget="paper"), tmp_path / "r.sqlite",
                       device="cpu", progress=False, report=False)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "random initialisation" in warnings[0] and "1 model(s)" in warnings[0]

    (loaded,) = load_suites([str(suite)])
    for budget, expected in (("paper", True), ("smoke", False)):
        results = SuiteResults(values={}, class_iou={}, seeds=[0], devices=["cpu"], data=["x"], budget=budget, timing=[], random_init=True)
        table = suite_table(loaded, paper_table("FaPN", "Table I"), results)
        assert (RANDOM_INIT_FOOTNOTE in table.footnotes) == expected


class OraclePanoptic(torch.nn.Module):
    """Predicts each image's ground truth (looked up by the exact input), counting its calls."""

    def __init__(self, dataset) -> None:
        from alignbench.bench.data.images import image_to_tensor

        super().__init__()
        self.calls = 0
        self.table = {}
        for index in range(len(dataset)):
            sample = dataset[index]
            boxes, category_ids, _, _ = sample.thing_instances(include_crowd=False)
            segments = []
            for segment in sample.segments_info:
                isthing = segment["category_id"] in dataset.things.ids
                table = dataset.things if isthing else dataset.stuff
                segments.append({"id": segment["id"], "category_id": int(table.labels_of([segment["category_id"]])[0]),
                                 "isthing": isthing, "area": int(segment["area"]), "score": 1.0})
            key = hashlib.sha1(image_to_tensor(sample.image).numpy().tobytes()).hexdigest()
            self.table[key] = {
                "boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(dataset.things.labels_of(category_ids)),
                "scores": torch.ones(len(boxes)), "panoptic": torch.from_numpy(sample.segment_map), "segments_info": segments,
            }

    def predict(self, images):
        self.calls += len(images)
        return [self.table[hashlib.sha1(image.cpu().numpy().tobytes()).hexdigest()] for image in images]


def test_panoptic_quality_and_box_ap_come_from_one_inference_pass(tmp_path):
    from alignbench.bench.data.catalog import get_dataset
    from alignbench.bench.data.synthetic import SynthSpec, write_dataset
    from alignbench.bench.recipes import budget
    from alignbench.bench.tasks import DataSource, PanopticTask, first_images

    root = write_dataset(tmp_path / "data", SynthSpec(n_train=1, n_val=3, size=(64, 128), seed=5), progress=False)
    task = PanopticTask("panoptic", DataSource(get_dataset("synthetic"), Path(root), "test scenes"))
    val = task.val()
    subset = first_images(val, 2)  # in memory: the dataset itself keeps its three images
    assert len(subset) == 2 and len(val) == 3 and len(subset.data["images"]) == 2
    assert {a["image_id"] for a in subset.data["annotations"]} == set(subset.images)
    oracle = OraclePanoptic(val)
    smoke = budget("smoke")
    metrics = task.evaluate(oracle, "cpu", smoke)
    assert oracle.calls == min(3, smoke.eval_max_images)  # each image predicted once, for PQ and box AP together
    assert metrics["PQ"] == metrics["SQ"] == metrics["RQ"] == metrics["PQ_th"] == 1.0
    assert metrics["AP_bbox"] == pytest.approx(1.0)
    assert not list((tmp_path / "data" / "coco" / "annotations").glob("*first*"))  # no subset JSON written


def test_git_runs_once_per_process(monkeypatch):
    calls = []
    original = provenance.subprocess.run

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(provenance.subprocess, "run", counting)
    provenance.git_commit.cache_clear()
    first, second = provenance.git_commit(), provenance.git_commit()
    assert first == second and len(calls) == 1


def test_one_parameter_counter_and_one_image_conversion():
    from alignbench.bench import profiling, train
    from alignbench.bench.data import images

    model = models.build("rt_fpn_r18")
    total, by_module = profiling.count_parameters(model)
    assert total == models.count_parameters(model) == sum(by_module.values())
    assert train.image_to_tensor is images.image_to_tensor
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    tensor = images.image_to_tensor(image)
    assert tensor.shape == (3, 2, 3) and tensor.dtype == torch.float32 and tensor.is_contiguous()
    assert float(tensor[2, 1, 0]) == pytest.approx(image[1, 0, 2] / 255.0)
    converters = [path for path in (REPO_ROOT / "bench").rglob("*.py") if "div_(255" in path.read_text()]
    assert [path.name for path in converters] == ["images.py"], converters


def test_the_fingerprint_follows_options_and_the_registering_module(monkeypatch):
    base = provenance.model_fingerprint("rt_fpn_r18")
    assert provenance.model_fingerprint("rt_fpn_r18") == base  # stable
    assert provenance.model_fingerprint("rt_fpn_r18", {"num_classes": 5}) != base
    registering = provenance._registering_modules("rt_fpn_r18")
    assert registering, "the module that registers rt_fpn_r18 names it"
    files = {str(Path(sys.modules[name].__file__).resolve()) for name in registering}
    real = provenance.file_sha256
    monkeypatch.setattr(provenance, "file_sha256", lambda path: "changed" if str(Path(path).resolve()) in files else real(path))
    provenance._fingerprint.cache_clear()
    try:
        assert provenance.model_fingerprint("rt_fpn_r18") != base  # e.g. a partial's option edited there
    finally:
        provenance._fingerprint.cache_clear()


def test_run_all_weights_options_name_a_model_or_every_row():
    from alignbench.bench.commands.run_all import weights_map

    # absolute: worker processes and cluster jobs read the files too
    assert weights_map(["all.pt", "rt_fpn_r18=fpn.pt"], "--checkpoint") == {"*": str(Path("all.pt").resolve()),
                                                                             "rt_fpn_r18": str(Path("fpn.pt").resolve())}
    assert weights_map(None, "--checkpoint") is None
    with pytest.raises(UserError, match="--backbone-weights rt_fpn_r81=x.pt: unknown model"):
        weights_map(["rt_fpn_r81=x.pt"], "--backbone-weights")
    with pytest.raises(UserError, match="two files for every row"):
        weights_map(["a.pt", "b.pt"], "--checkpoint")


def test_train_evaluates_a_checkpoint_and_writes_its_provenance(small_tree, tmp_path, cli):
    torch.manual_seed(2)
    weights = tmp_path / "fpn.pt"
    torch.save(models.build("rt_fpn_r18").state_dict(), weights)  # a plain state dict
    out = tmp_path / "scores.json"
    result = cli("train", "rt_fpn_r18", "--eval-only", "--weights", weights, "--data", f"cityscapes={small_tree}", "--device", "cpu",
                 "--json", out)
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    assert written["checkpoint"] == str(weights.resolve()) and written["code"]["version"] == provenance.code_version()
    assert {"mIoU", "IoU_cat", "band_3", "band_mean"} <= set(written["metrics"]) and written["metrics"]["n_images"] == 4
    assert "params_m" not in written["metrics"]
