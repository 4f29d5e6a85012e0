"""run-all input errors and the speed benchmark's machinery (no timing is asserted)."""

from __future__ import annotations

import json

from alignbench_test_helpers import REPO_ROOT


def test_run_all_rejects_unknown_data(cli, tmp_path):
    result = cli("run-all", "--data", "kitti", "--results", tmp_path / "r.sqlite")
    assert result.returncode == 2 and "--data" in result.stderr


def test_perf_semantic_runs_both_evaluators_and_agrees(cli, tmp_path):
    out = tmp_path / "perf.json"
    result = cli("perf", "semantic", "--n", "3", "--size", "96x192", "--workers", "2", "--json", out, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["n_images"] == 3
    assert figures["reference_s"] > 0 and figures["ours_one_process_s"] > 0 and figures["ours_workers_s"] > 0
    assert figures["max_abs_difference"] < 1e-9
    assert "ratio (a)/(b), 1 process" in result.stdout
