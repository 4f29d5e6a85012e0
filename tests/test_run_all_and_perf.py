"""The interim main job and the speed benchmark's machinery (no timing is asserted)."""

from __future__ import annotations

import json
import os

from helpers import REPO_ROOT


def test_run_all_on_synthetic_data(cli, tmp_path):
    env = {**os.environ, "ALIGNBENCH_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "out"
    result = cli("run-all", "--out", out, env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "run-all.json").read_text())
    results = summary["results"]
    assert summary["n_images"] == 8 and list(results) == ["oracle-1/4", "oracle-1/8", "oracle-1/16", "oracle-1/32"]
    mious = [r["mIoU"] for r in results.values()]
    assert mious == sorted(mious, reverse=True)  # coarser oracles score lower
    for r in results.values():  # errors concentrate at boundaries: the narrowest band scores lowest
        bands = r["boundary_mIoU"]
        assert bands["3"] < bands["12"] <= r["mIoU"] + 1e-9
    assert "oracle-1/8" in result.stdout and (out / "run-all.md").exists()
    # a second run reuses the cached data
    again = cli("run-all", "--out", out, env=env)
    assert again.returncode == 0 and json.loads((out / "run-all.json").read_text()) == summary


def test_run_all_rejects_unknown_data(cli, tmp_path):
    result = cli("run-all", "--data", "kitti", "--out", tmp_path)
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
