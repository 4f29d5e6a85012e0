"""The recipe's `ema_decay`: the trained weights are the exponential moving average of the iterates (and of the
BatchNorm statistics), and an interrupted run resumes the average exactly."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from alignbench_test_helpers import four_iteration_training, interrupt_on_call


def _train(model, dataset, config, folder):
    from alignbench.bench.train import SemanticTrainingSet, semantic_collate, train

    train(model, SemanticTrainingSet(dataset, config, 3), semantic_collate, config, folder)
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def test_the_trained_weights_are_the_moving_average_of_the_iterates(tmp_path):
    dataset, config, fresh = four_iteration_training(tmp_path)
    decay = 0.5
    iterates = []
    model = fresh()
    original_loss = model.loss

    def recording_loss(*args, **kwargs):  # the weights before each step: iterates[1:] + the last are the iterates
        iterates.append({key: value.detach().clone() for key, value in model.state_dict().items()})
        return original_loss(*args, **kwargs)

    model.loss = recording_loss
    averaged = _train(model, dataset, replace(config, ema_decay=decay), tmp_path / "ema")
    last = _train(fresh(), dataset, config, tmp_path / "plain")
    # torch's AveragedModel takes the first iterate as it is, then a <- decay * a + (1 - decay) * w after every
    # later optimiser step (w: the new iterate); the final iterate is the plain run's weights
    steps = [*iterates[1:], last]
    name = next(key for key, value in last.items() if value.is_floating_point() and value.dim() == 4)
    expected = steps[0][name].clone()
    for weights in steps[1:]:
        expected = decay * expected + (1 - decay) * weights[name]
    torch.testing.assert_close(averaged[name], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(averaged[name], last[name])
    running = next(key for key in last if key.endswith("running_mean"))
    assert not torch.equal(averaged[running], last[running])  # BatchNorm statistics are averaged too


def test_an_interrupted_run_resumes_the_average_exactly(tmp_path):
    dataset, config, fresh = four_iteration_training(tmp_path)
    config = replace(config, ema_decay=0.7)
    reference = _train(fresh(), dataset, config, tmp_path / "a")
    interrupted = fresh()
    interrupt_on_call(interrupted, 4)  # iteration 3 fails, after the checkpoint at iteration 2
    with pytest.raises(KeyboardInterrupt):
        _train(interrupted, dataset, config, tmp_path / "b")
    resumed = _train(fresh(), dataset, config, tmp_path / "b")
    for key, value in reference.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_recipes_without_an_average_keep_their_training_keys():
    from alignbench.bench.recipes import RECIPES

    assert "ema_decay" not in RECIPES["fapn_semantic"].to_json()
    assert replace(RECIPES["fapn_semantic"], ema_decay=0.99).to_json()["ema_decay"] == 0.99
