"""`alignbench perf semantic|panoptic --workload`: every workload runs, reports the whole-process and
in-process figures, and every run of ours scores what the reference scores (no timing is asserted)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from alignbench_test_helpers import REPO_ROOT

from alignbench.bench.commands.perf import WORKLOAD_NAMES
from alignbench.bench.perf import WORKLOADS, reworked_panoptic_prediction, semantic_prediction

FIGURES = (
    "floor_s", "reference_s", "command_one_process_s", "command_workers_s", "in_process_one_s", "in_process_workers_s",
    "ratio_one_process", "ratio_workers", "ratio_in_process_one", "ratio_in_process_workers",
    "command_one_process_cpu_s", "reference_cpu_s", "ratio_one_process_cpu", "accumulator_bytes",
)
STAGES = {
    "semantic": ["decode 3 PNGs", "boundary", "bands", "confusion histogram", "instances"],
    "panoptic": ["decode 2 PNGs", "segments_info", "joint histogram", "checks and matching"],
}


def test_parser_lists_every_workload():
    assert WORKLOAD_NAMES == tuple(WORKLOADS)
    sizes = {workload.size for workload in WORKLOADS.values()}
    assert sizes == {(512, 1024), (1024, 2048)}
    densities = [workload.density for workload in WORKLOADS.values()]
    assert min(densities) < 0.5 and max(densities) >= 10  # few and ~200 instances per image


@pytest.mark.parametrize("evaluator", ["semantic", "panoptic"])
def test_every_workload_runs_and_agrees_with_the_reference(cli, tmp_path, evaluator):
    out = tmp_path / "perf.json"
    result = cli("perf", evaluator, "--workload", "all", "--n", "1", "--size", "64x128", "--workers", "2", "--json", out, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())["workloads"]
    assert [f["workload"] for f in figures] == list(WORKLOAD_NAMES)
    for entry in figures:
        assert entry["evaluator"] == evaluator and entry["n_images"] == 1 and entry["size"] == [64, 128]
        assert all(entry[key] > 0 for key in FIGURES), entry
        assert entry["ratio_one_process"] == pytest.approx(entry["command_one_process_s"] / entry["reference_s"])
        assert entry["ratio_workers"] == pytest.approx(entry["command_workers_s"] / entry["reference_s"])
        assert entry["ratio_in_process_one"] == pytest.approx(entry["in_process_one_s"] / entry["reference_s"])
        assert entry["ratio_in_process_workers"] == pytest.approx(entry["in_process_workers_s"] / entry["reference_s"])
        assert entry["ratio_one_process_cpu"] == pytest.approx(entry["command_one_process_cpu_s"] / entry["reference_cpu_s"])
        assert list(entry["stages_s"]) == STAGES[evaluator] and all(seconds >= 0 for seconds in entry["stages_s"].values())
        assert entry["max_abs_difference"] < 1e-9, entry["workload"]
        assert not any("target" in key for key in entry), entry  # measured figures only: the reader judges them
    lines = result.stdout.splitlines()
    per_workload = {  # the lines of each workload's report: every measured figure, and no verdict on it
        "floor: decoding the PNGs": 1, "(b) reference, in process": 1, "ratio (a)/(b)": 2, "(a') in process, 1 process": 1,
        "(a') in process, 2 workers": 1, "profile, ms/image": 1, "start-up and listing": 1, "CPU time": 1,
        "agreement: max |ours - reference|": 1,
    }
    for needle, count in per_workload.items():
        assert sum(needle in line for line in lines) == count * len(WORKLOAD_NAMES), needle
    assert re.search(r"\b(targets?|met|MISSED)\b", result.stdout) is None, result.stdout
    header = next(line for line in lines if line.startswith("evaluator"))
    assert header.split()[-2:] == ["max", "|diff|"]
    for name in WORKLOAD_NAMES:  # the summary table has one line per workload, ending with the largest score difference
        (row,) = [line for line in lines if line.startswith(f"{evaluator:9s} {name}")]
        assert float(row.split()[-1]) < 1e-9, row


def test_one_workload_writes_the_same_json_shape(cli, tmp_path):
    out = tmp_path / "perf.json"
    result = cli("perf", "semantic", "--workload", "fragments", "--n", "2", "--size", "64x128", "--workers", "1", "--repeat", "2", "--json", out, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(out.read_text())["workloads"]
    assert entry["workload"] == "fragments" and entry["n_images"] == 2 and entry["repeat"] == 2
    assert "(best of 2)" in result.stdout
    assert entry["command_workers_s"] is None and entry["ratio_workers"] is None
    assert entry["max_abs_difference"] < 1e-9


def test_perf_rejects_dir_with_all_workloads(cli, tmp_path):
    result = cli("perf", "panoptic", "--workload", "all", "--dir", tmp_path / "pairs")
    assert result.returncode == 2 and "--dir" in result.stderr and "Traceback" not in result.stderr


def test_prediction_kinds_differ_as_described():
    rng = np.random.default_rng(0)
    label_ids = np.full((64, 128), 7, np.uint8)  # all road
    label_ids[:, 64:] = 21  # vegetation
    oracle = semantic_prediction(label_ids, "oracle", rng)
    classes = semantic_prediction(label_ids, "classes", rng)
    fragments = semantic_prediction(label_ids, "fragments", rng)
    assert set(np.unique(oracle)) == {7, 21}
    assert len(np.unique(classes)) > 4 and not set(np.unique(classes)) <= {7, 21}
    assert (fragments != oracle).mean() > 0.02
    segment_map = np.where(np.arange(128)[None, :] < 64, 5, 9).repeat(64, axis=0).astype(np.int32)
    segments = [{"id": 5, "category_id": 7}, {"id": 9, "category_id": 21}]
    pieces, pieces_info = reworked_panoptic_prediction(segment_map, segments, [{"id": 7}, {"id": 21}], "fragments", rng)
    assert len(pieces_info) == len(np.unique(pieces)) == 2 * 4  # two segments, each cut into 2 x 2 tiles of 32 px
    assert {s["category_id"] for s in pieces_info} == {7, 21}


FAULTS_SCRIPT = """
import resource, sys
from pathlib import Path
from alignbench.bench.evaluation.parallel import keep_freed_memory_for_reuse
from alignbench.bench.evaluation.semantic import SemanticEvalConfig, evaluate_pairs, pair_predictions
took = keep_freed_memory_for_reuse() if sys.argv[1] == "keep" else None
root = Path(sys.argv[2])
pairs = pair_predictions(root, root / "pred", "val")
evaluate_pairs(pairs[:1], SemanticEvalConfig(), workers=1)  # the first image pays for the blocks either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
evaluate_pairs(pairs[1:], SemanticEvalConfig(), workers=1)
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_keeping_freed_memory_stops_the_per_image_page_faults(tmp_path):
    """The `eval` commands' malloc setting (issue 17: 0.6 s of a 3.5 s command): after the first image, the
    semantic evaluator's per-image blocks are reused instead of being faulted in again for every image. The
    minor page faults are counted by the kernel."""
    import subprocess
    import sys

    from alignbench.bench.perf import write_benchmark_pairs

    write_benchmark_pairs(tmp_path, 6, (256, 512), 0.15, prediction="oracle")

    def faults(mode: str) -> tuple[str, int]:
        command = [sys.executable, "-c", FAULTS_SCRIPT, mode, str(tmp_path)]
        took, count = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
        return took, int(count)

    took, kept = faults("keep")
    if took != "True":
        pytest.skip("the C library is not glibc: there is no malloc setting to change")
    _, default = faults("default")
    assert default > 5 * 50  # by default, every one of the 5 images faults its blocks in afresh
    assert kept < default / 5
