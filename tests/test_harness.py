"""The harness: run-all resumes after SIGKILL, reports while writing, refuses bad stores and suite files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from alignbench_test_helpers import four_iteration_training, interrupt_on_call, run_cli

from alignbench.bench.errors import UserError
from alignbench.bench.results import ResultRecord, ResultsStore, load_results

SUITE = """\
suite: {name}
paper: FaPN
table: Table I
task: semantic
recipe: fapn_realtime
metrics: [mIoU, params_m]
rows:
  - {{row: fpn_r18, model: rt_fpn_r18, input_size: [128, 256]}}
  - {{row: fam_r18, model: rt_fpn_fam_r18, input_size: [128, 256]}}
  - {{row: fam_fsm_r18, model: rt_fpn_fam_fsm_r18, input_size: [128, 256]}}
"""


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """One synthetic-data cache for the module's runs."""
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "ALIGNBENCH_CACHE": str(cache)}


def _suite_file(directory: Path, name: str = "tiny_suite", text: str = SUITE) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text.format(name=name))
    return path


def _count(database: Path) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(database) as connection:
        try:
            return connection.execute("SELECT count(*) FROM results").fetchone()[0]
        except sqlite3.OperationalError:  # the store is being created
            return 0


def test_run_all_resumes_after_sigkill_and_reports_while_writing(tmp_path, environment):
    suite = _suite_file(tmp_path)
    database = tmp_path / "out" / "results.sqlite"
    # 4 seeds x 3 rows: enough entries (a few seconds each) that the run is still writing after the live
    # report, however fast the machine
    command = [sys.executable, "-m", "alignbench", "run-all", "--suite", str(suite), "--results", str(database), "--device", "cpu",
               "--seeds", "0,1,2,3"]
    process = subprocess.Popen(command, env=environment, cwd=tempfile.gettempdir(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while _count(database) < 1 and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()
    # a report generated while run-all is writing
    report = run_cli("report", "--results", database, "--out", tmp_path / "live-report", env=environment)
    assert report.returncode == 0, report.stderr
    assert "FPN + FAM" in (tmp_path / "live-report" / "report.md").read_text()
    process.send_signal(signal.SIGKILL)
    process.wait()
    with ResultsStore(database) as store:
        before = {(r.row, r.id, r.finished_at) for r in store.records()}
    assert 1 <= len(before) < 12
    finished = run_cli(*command[3:], env=environment)
    assert finished.returncode == 0, finished.stderr
    assert f"{len(before)} already complete" in finished.stdout
    with ResultsStore(database) as store:
        records = store.records()
    assert sorted((r.row, r.seed) for r in records) == [(row, seed) for row in ["fam_fsm_r18", "fam_r18", "fpn_r18"] for seed in range(4)]  # nothing duplicated
    assert before <= {(r.row, r.id, r.finished_at) for r in records}  # nothing finished was lost or redone
    for record in records:
        assert record.metrics["params_m"] > 10 and 0.0 <= record.metrics["mIoU"] <= 1.0
        assert record.torch == torch.__version__ and record.device == "cpu" and record.budget == "smoke"
    again = run_cli(*command[3:], env=environment)
    assert again.returncode == 0 and "12 already complete, 0 run" in again.stdout
    # the smoke budget deletes the weights; one training log per training is kept beside the results
    assert not list((database.parent / "checkpoints").glob("*/final.pt"))
    assert len(list((database.parent / "logs").glob("*.jsonl"))) == 12
    report = (database.parent / "report" / "report.md").read_text()
    assert "| FPN + FAM + FSM + Concat (paper only) | R18 |" in report
    assert "**" not in report and "| — |" in report  # smoke accuracy is no result: not shown, nothing bolded
    assert (database.parent / "report" / "report.tex").read_text().count(r"\toprule") == 1
    exported = run_cli("results", "--results", database, "--format", "json", env=environment)
    rows = json.loads(exported.stdout)
    assert len(rows) == 12 and {"suite", "row", "config_hash", "git_commit", "mIoU", "params_m"} <= set(rows[0])


def test_foreign_corrupt_and_empty_databases_are_refused_untouched(tmp_path):
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    text = tmp_path / "text.sqlite"
    text.write_text("not a database")
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for path, message in [(foreign, "another application"), (corrupt, "another application"), (text, "not a SQLite database"), (empty, "empty file")]:
        content = path.read_bytes()
        with pytest.raises(UserError, match=message):
            ResultsStore(path)
        assert path.read_bytes() == content
        result = run_cli("report", "--results", path)
        assert result.returncode == 2 and str(path) in result.stderr and len(result.stderr.strip().splitlines()) == 1
    ours = tmp_path / "ours.sqlite"
    ResultsStore(ours).close()
    with open(ours, "r+b") as handle:  # keep our header, break the pages
        handle.seek(100)
        handle.write(os.urandom(3000))
    with pytest.raises(UserError, match="not a usable SQLite results database"):
        ResultsStore(ours)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (("model: rt_fpn_fam_r18", "model: rt_fpn_fam_r81"), ":9: rows.1.model: unknown model 'rt_fpn_fam_r81'"),
        (("metrics: [mIoU, params_m]", "metrics: [mIoU, PQ]"), ":6: metrics.1: 'PQ' is not a semantic metric"),
        (("recipe: fapn_realtime", "recipe: fapn_realtime\ncolour: blue"), ":6: colour: unknown field"),
        (("row: fam_r18", "row: fam_r19"), ":9: rows.1.row: 'fam_r19' is not a row of FaPN Table I"),
        (("table: Table I", "table: Table 99"), ":3: table:"),
        (("rows:", "rows: ["), "invalid YAML"),
        (("task: semantic\nrecipe: fapn_realtime\nmetrics: [mIoU, params_m]", "task: detection\nrecipe: fapn_realtime\nmetrics: [AP_bbox]"),
         ":8: rows.0.model: 'rt_fpn_r18' is a semantic model, the suite's task is detection"),
    ],
)
def test_bad_suite_files_name_file_line_and_field(tmp_path, change, fragment):
    path = _suite_file(tmp_path, text=SUITE.replace(*change))
    result = run_cli("run-all", "--suite", path, "--results", tmp_path / "r.sqlite", "--no-report")
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and fragment in lines[0], lines
    assert not (tmp_path / "r.sqlite").exists() or (tmp_path / "r.sqlite").stat().st_size > 0


def test_built_in_suites_are_valid():
    from alignbench.bench.suites import load_suites

    suites = load_suites()
    assert {"fapn_table1", "fapn_table2", "fapn_table4"} <= {s.name for s in suites}


def test_interrupted_training_resumes_exactly(tmp_path):
    """A run stopped after iteration 3 and resumed ends with the weights of an uninterrupted run."""
    from alignbench.bench.train import FINAL, LAST, SemanticTrainingSet, semantic_collate, train

    dataset, config, fresh = four_iteration_training(tmp_path)
    reference = fresh()
    train(reference, SemanticTrainingSet(dataset, config, 3), semantic_collate, config, tmp_path / "a")
    interrupted = fresh()
    interrupt_on_call(interrupted, 4)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, SemanticTrainingSet(dataset, config, 3), semantic_collate, config, tmp_path / "b")
    assert (tmp_path / "b" / LAST).exists() and not (tmp_path / "b" / FINAL).exists()
    resumed = fresh()
    outcome = train(resumed, SemanticTrainingSet(dataset, config, 3), semantic_collate, config, tmp_path / "b")
    assert outcome.resumed_from == 2 and outcome.iterations == 2
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_results_store_keeps_one_row_per_entry(tmp_path):
    database = tmp_path / "r.sqlite"
    record = ResultRecord("s", "r", 0, "m", "semantic", "smoke", "synthetic", "abc", {"x": 1}, {"mIoU": 0.5, "iIoU": float("nan")},
                          "2026-01-01T00:00:00+00:00", "2026-01-01T00:01:00+00:00", 60.0)
    with ResultsStore(database) as store:
        assert store.add(record) and not store.add(record)
        assert store.has("s", "r", 0, "abc") and not store.has("s", "r", 1, "abc")
    frame = load_results(database)
    assert len(frame) == 1 and frame.loc[0, "mIoU"] == 0.5 and frame.loc[0, "iIoU"] is None
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"r.{fmt}"
        result = run_cli("results", "--results", database, "--format", fmt, "--out", out)
        assert result.returncode == 0 and out.stat().st_size > 0


def test_worker_processes_share_the_groups_and_train_each_once(tmp_path, environment):
    """`--workers 2`: two processes run the plan; the store's leases give each training group to one of them, every
    entry is stored once, and the report is written at the end."""
    suite = _suite_file(tmp_path)
    database = tmp_path / "out" / "results.sqlite"
    result = run_cli("run-all", "--suite", str(suite), "--budget", "smoke", "--workers", "2", "--seeds", "0,1",
                     "--results", str(database), env=environment)
    assert result.returncode == 0, result.stderr
    assert "6 entries, 0 already complete, 6 run, 0 failed" in result.stdout
    assert _count(database) == 6
    with sqlite3.connect(database) as connection:
        keys = connection.execute("SELECT suite, row, seed FROM results").fetchall()
    assert len(set(keys)) == 6
    training_logs = list((database.parent / "logs").glob("*.jsonl"))
    assert len(training_logs) == 6  # one per training group: none trained twice (a second would reuse the name)
    assert all(len(path.read_text().splitlines()) == 6 for path in training_logs)  # the smoke budget's 6 iterations, once
    assert (database.parent / "report" / "report.md").is_file()
