"""The per-run training log (train_log.jsonl): one line per iteration, each iteration once after a resume."""

from __future__ import annotations

import pytest
from alignbench_test_helpers import four_iteration_training, interrupt_on_call


def test_training_log_has_each_iteration_once_after_a_resume(tmp_path):
    from alignbench.bench.train import LOG, SemanticTrainingSet, read_training_log, semantic_collate, train

    dataset, config, fresh = four_iteration_training(tmp_path)
    train(fresh(), SemanticTrainingSet(dataset, config, 3), semantic_collate, config, tmp_path / "a")
    reference = read_training_log(tmp_path / "a")
    assert [r["iteration"] for r in reference] == [0, 1, 2, 3]
    assert all(r["loss"] > 0 and r["seconds"] > 0 and set(r) >= {"lr", "loss/loss_sem_seg"} for r in reference), reference[0]
    assert [r["lr"] for r in reference] == [config.lr_at(i) for i in range(4)]

    interrupted = fresh()
    interrupt_on_call(interrupted, 4)  # iteration 3 fails, after the checkpoint at 2 and the logged iteration 2
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, SemanticTrainingSet(dataset, config, 3), semantic_collate, config, tmp_path / "b")
    assert [r["iteration"] for r in read_training_log(tmp_path / "b")] == [0, 1, 2]
    with open(tmp_path / "b" / LOG, "a") as log:
        log.write('{"iteration": 3, "lo')  # a line cut by a kill
    train(fresh(), SemanticTrainingSet(dataset, config, 3), semantic_collate, config, tmp_path / "b")
    resumed = read_training_log(tmp_path / "b")
    assert [r["iteration"] for r in resumed] == [0, 1, 2, 3]
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in reference], abs=1e-5)
