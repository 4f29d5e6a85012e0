"""The per-run training log (train_log.jsonl): one line per iteration, each iteration once after a resume."""

from __future__ import annotations

import pytest
import torch

from alignbench.bench.recipes import training_config


def test_training_log_has_each_iteration_once_after_a_resume(tmp_path):
    from alignbench import models
    from alignbench.bench.data.cityscapes import CityscapesDataset
    from alignbench.bench.data.synthetic import SynthSpec, write_dataset
    from alignbench.bench.train import LOG, SemanticTrainingSet, read_training_log, semantic_collate, train

    write_dataset(tmp_path / "data", SynthSpec(n_train=2, n_val=1, size=(64, 128)), progress=False)
    config = training_config("fapn_realtime", "smoke")
    config = type(config)(**{**config.__dict__, "iterations": 4, "checkpoint_every": 2, "crop": (32, 64)})
    dataset = CityscapesDataset(tmp_path / "data", "train")

    def fresh():
        torch.manual_seed(0)
        return models.build("rt_fpn_r18")

    train(fresh(), SemanticTrainingSet(dataset, config, 3), semantic_collate, config, tmp_path / "a")
    reference = read_training_log(tmp_path / "a")
    assert [r["iteration"] for r in reference] == [0, 1, 2, 3]
    assert all(r["loss"] > 0 and r["seconds"] > 0 and set(r) >= {"lr", "loss/loss_sem_seg"} for r in reference), reference[0]
    assert [r["lr"] for r in reference] == [config.lr_at(i) for i in range(4)]

    interrupted = fresh()
    calls = {"n": 0}
    original = interrupted.loss

    def failing_loss(*args, **kwargs):  # iteration 3 fails, after the checkpoint at 2 and the logged iteration 2
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    interrupted.loss = failing_loss
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, SemanticTrainingSet(dataset, config, 3), semantic_collate, config, tmp_path / "b")
    assert [r["iteration"] for r in read_training_log(tmp_path / "b")] == [0, 1, 2]
    with open(tmp_path / "b" / LOG, "a") as log:
        log.write('{"iteration": 3, "lo')  # a line cut by a kill
    train(fresh(), SemanticTrainingSet(dataset, config, 3), semantic_collate, config, tmp_path / "b")
    resumed = read_training_log(tmp_path / "b")
    assert [r["iteration"] for r in resumed] == [0, 1, 2, 3]
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in reference], abs=1e-5)
