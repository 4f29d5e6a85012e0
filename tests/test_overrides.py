"""`--set key=value` overrides: typed and checked, applied on top of the budget, part of the provenance."""

from __future__ import annotations

import pytest

from alignbench.bench.errors import UserError
from alignbench.bench.recipes import apply_overrides, budget, parse_overrides, training_config


def test_overrides_are_typed_and_aliased():
    overrides = parse_overrides(["iterations=500", "batch=4", "crop=128x256", "scales=0.5,2.0", "flip=false",
                                 "eval_size=256x512", "eval_images=10", "schedule=step", "steps=100,200"])
    assert overrides.train == {"iterations": 500, "batch_size": 4, "crop": (128, 256), "scales": (0.5, 2.0), "flip": False,
                               "schedule": "step", "steps": (100, 200)}
    assert overrides.budget == {"eval_max_images": 10} and overrides.evaluation == {"eval_size": (256, 512)}
    assert overrides.to_json()["train"]["crop"] == [128, 256]
    assert not parse_overrides([]) and parse_overrides(None) == parse_overrides([])


def test_applied_on_top_of_the_budget_with_linear_lr_scaling():
    config, smoke = training_config("fapn_semantic", "smoke"), budget("smoke")
    changed, changed_budget = apply_overrides(config, smoke, parse_overrides(["batch=4", "iterations=12", "eval_images=2"]))
    assert changed.batch_size == 4 and changed.iterations == 12
    assert changed.base_lr == pytest.approx(config.base_lr * 4 / config.batch_size)
    assert changed_budget.eval_max_images == 2 and changed_budget.name == "smoke"
    explicit, _ = apply_overrides(config, smoke, parse_overrides(["batch=4", "lr=0.5"]))
    assert explicit.base_lr == 0.5
    unchanged, same_budget = apply_overrides(config, smoke, parse_overrides([]))
    assert unchanged == config and same_budget == smoke


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("iterations", "expected key=value"),
        ("iters=5", "--set iters: unknown key"),
        ("iterations=ten", "--set iterations=ten: Input should be a valid integer"),
        ("iterations=0", "must be positive"),
        ("batch=-2", "must be positive"),
        ("crop=128", "--set crop=128"),
        ("crop=128x256x3", "--set crop=128x256x3"),
        ("lr=fast", "--set lr=fast"),
        ("flip=maybe", "--set flip=maybe"),
    ],
)
def test_bad_overrides_name_the_key(pair, message):
    with pytest.raises(UserError, match=None) as error:
        parse_overrides([pair])
    assert message in str(error.value) and "\n" not in str(error.value)
