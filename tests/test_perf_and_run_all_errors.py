"""run-all input errors (the speed benchmarks are tested in tests/test_perf_workloads.py)."""

from __future__ import annotations


def test_run_all_rejects_unknown_data(cli, tmp_path):
    result = cli("run-all", "--data", "kitti", "--results", tmp_path / "r.sqlite")
    assert result.returncode == 2 and "--data" in result.stderr
